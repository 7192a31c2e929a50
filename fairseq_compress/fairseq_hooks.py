"""Every change this plugin makes to fairseq's own behaviour, in one place.

``install()`` (run by ``import fairseq_compress``) replaces these fairseq
functions, each once, whatever was imported first:

| fairseq attribute | becomes | why |
|---|---|---|
| ``checkpoint_utils.load_checkpoint_to_cpu`` | ``load_checkpoint`` | torch's safe unpickler with the allow-list, one-line errors for unsafe or damaged files, the int8 override, compressed files and pruning masks decoded |
| ``file_io.PathManager.copy`` | atomic, durable copy | fairseq copies over ``checkpoint_last.pt`` in place: a kill mid-copy truncated it |
| ``file_io.PathManager.rename`` | fsync, rename, fsync the directory | after a power loss the rename of fairseq's atomic save could survive while the data did not |
| ``data.data_utils.batch_by_size`` | keeps the last batch | fairseq 0.12 drops it when its size is not a multiple of ``--required-batch-size-multiple`` (fairseq issue 5036): the longest sentences went unscored |
| ``sys.excepthook`` | one line for a user's error | a bad flag or file is not a traceback |

Each replacement is recorded in ``INSTALLED`` against the original, so a
second ``install()`` does nothing and ``installed()`` can check the chain.
"""
import sys
from typing import Callable, Dict, Tuple

import numpy as np
from fairseq import checkpoint_utils
from fairseq.data import data_utils
from fairseq.file_io import PathManager

from . import checkpoint_safety, errors
from .compress import checkpoint_format
from .modules import int8_inference

# (owner, attribute name) -> (original, replacement)
INSTALLED: Dict[Tuple[object, str], Tuple[Callable, Callable]] = {}


def load_checkpoint(load: Callable) -> Callable:
    """fairseq's checkpoint loader, made safe, then decoding what this plugin writes."""
    safe_load = checkpoint_safety.refuse_unsafe_pickles(load)

    def load_checkpoint_to_cpu(path, arg_overrides=None, *args, **kwargs):
        state = safe_load(path, arg_overrides, *args, **kwargs)
        int8_inference.accept_override(state, arg_overrides)
        return checkpoint_format.decode_checkpoint(state)

    return load_checkpoint_to_cpu


def keep_last_batch(batch_by_size: Callable) -> Callable:
    """fairseq's batch_by_size, with the indices it dropped appended as one (smaller) last batch."""

    def batch_by_size_keeping_all(indices, *args, **kwargs):
        batches = batch_by_size(indices, *args, **kwargs)
        indices = np.asarray(indices, dtype=np.int64)
        if sum(len(b) for b in batches) < len(indices):
            missing = indices[~np.isin(indices, np.concatenate(batches) if batches else [])]
            batches = list(batches) + [missing]
        return batches

    return batch_by_size_keeping_all


def _replace(owner, name: str, make: Callable[[Callable], Callable], static: bool = False) -> None:
    key = (owner, name)
    current = getattr(owner, name)
    if key in INSTALLED and current is INSTALLED[key][1]:
        return
    replacement = make(current)
    setattr(owner, name, staticmethod(replacement) if static else replacement)
    INSTALLED[key] = (current, getattr(owner, name))


def install() -> None:
    checkpoint_safety.allow_fairseq_checkpoint_globals()
    _replace(checkpoint_utils, "load_checkpoint_to_cpu", load_checkpoint)
    _replace(PathManager, "copy", checkpoint_safety.atomic_copy, static=True)
    _replace(PathManager, "rename", lambda rename: checkpoint_safety.durable_replace, static=True)
    _replace(data_utils, "batch_by_size", keep_last_batch)
    _replace(sys, "excepthook", errors.print_user_errors)


def installed() -> bool:
    """Whether every replacement is the one in effect."""
    return len(INSTALLED) == 5 and all(getattr(owner, name) is new for (owner, name), (_, new) in INSTALLED.items())
