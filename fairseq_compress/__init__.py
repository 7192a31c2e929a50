"""fairseq_compress: train Transformers efficiently, then compress them.

A fairseq ``--user-dir`` plugin: importing it registers its architectures,
modules, criterions and tasks, and makes fairseq load checkpoints with torch's
safe unpickler, compressed ones included.
"""
import logging

# fairseq's speech tasks log an irrelevant INFO line about tensorboardX on import.
logging.getLogger("fairseq.tasks.text_to_speech").setLevel(logging.WARNING)

from . import fairseq_hooks  # noqa: E402

fairseq_hooks.install()

from . import criterions, models, tasks  # noqa: E402,F401  (registration)
