"""fairseq_compress: train Transformers efficiently, then compress them.

A fairseq ``--user-dir`` plugin: importing it registers its architectures,
modules, criterions and tasks, and makes fairseq load checkpoints with torch's
safe unpickler.
"""
from . import checkpoint_safety

checkpoint_safety.install()

from . import models  # noqa: E402,F401  (registers the architectures)
