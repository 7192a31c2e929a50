"""Safe loading of fairseq checkpoints under torch >= 2.6, and saves a kill cannot corrupt.

``torch.load`` now unpickles with ``weights_only=True``, which refuses every
global it does not know. fairseq checkpoints hold a few plain data classes
besides tensors (measured with ``torch.serialization.get_unsafe_globals_in_checkpoint``);
we allow exactly those, keep ``weights_only=True`` for everyone, and turn the
unpickler's refusal into a one-line error naming the file.

fairseq writes the first file of a checkpoint save atomically (a temporary file
renamed into place) but then copies it over ``checkpoint_last.pt`` and
``checkpoint_best.pt`` in place: a process killed during that copy leaves a
truncated ``checkpoint_last.pt`` and the run cannot resume. Copies are made
atomic the same way.
"""
import argparse
import os
import pickle
import zipfile

import numpy as np
import torch
from fairseq.file_io import PathManager

from .errors import ConfigError

# Plain data containers found in checkpoints written by fairseq and this plugin;
# none of them can run code when unpickled. The numpy ones are the meters of
# `--eval-bleu` (n-gram counts) saved with the training metrics: numeric arrays
# only (an object array's dtype is refused).
NUMERIC_DTYPES = [type(np.dtype(t)) for t in (np.bool_, np.int32, np.int64, np.float32, np.float64)]
FAIRSEQ_CHECKPOINT_GLOBALS = [argparse.Namespace, np.ndarray, np.dtype, np._core.multiarray._reconstruct,
                              *NUMERIC_DTYPES]


class UnsafeCheckpointError(ConfigError, pickle.UnpicklingError):
    """A checkpoint holding objects that could run code: refused, printed as one line."""


class CorruptCheckpointError(ConfigError):
    """A truncated or damaged checkpoint file, printed as one line."""


def allow_fairseq_checkpoint_globals():
    torch.serialization.add_safe_globals(FAIRSEQ_CHECKPOINT_GLOBALS)


def _explain_refusal(path, error):
    # torch's message is several paragraphs; the line naming the global is the news.
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [repr(error)]
    culprit = next((line for line in lines if "GLOBAL" in line), lines[-1])
    return UnsafeCheckpointError(
        f"refusing to load checkpoint {path}: it holds an object that is not an allowed "
        f"fairseq checkpoint type and could run code when unpickled ({culprit})"
    )


def _is_damaged(path, error):
    """torch.load's errors on a truncated or overwritten file: a broken zip (torch's format
    since 1.6), or an unpickling failure on something that is not a zip at all."""
    if isinstance(error, RuntimeError):
        return "PytorchStreamReader" in str(error)
    return isinstance(error, (EOFError, KeyError, pickle.UnpicklingError)) and not zipfile.is_zipfile(path)


def refuse_unsafe_pickles(load):
    """Wrap a checkpoint loader so torch's refusal and damaged files become one clear error each."""

    def safe_load(path, *args, **kwargs):
        try:
            return load(path, *args, **kwargs)
        except (RuntimeError, EOFError, KeyError, pickle.UnpicklingError) as error:
            if _is_damaged(path, error):
                raise CorruptCheckpointError(
                    f"checkpoint {path} is truncated or damaged ({type(error).__name__}); use an intact copy, "
                    f"e.g. the checkpoint_<epoch>_<updates>.pt it was copied from") from None
            if isinstance(error, pickle.UnpicklingError):
                raise _explain_refusal(path, error) from None
            raise

    return safe_load


@refuse_unsafe_pickles
def load_state(path):
    """``torch.load`` of a checkpoint to CPU with the safe unpickler."""
    return torch.load(path, map_location="cpu", weights_only=True)


# Re-implements: fairseq 0.12.3.1 (fairseq-fixed) fairseq.file_io.PathManager.rename (os.rename), which fairseq_hooks
# replaces with this: the same rename, plus the fsyncs. Checked by tests/test_fairseq_hooks.py::
# test_durable_replace_fsyncs_the_data_before_the_rename_and_the_directory_after.
def durable_replace(partial, path):
    """Rename `partial` over `path` so that after a crash or a power loss `path` is the
    old file or the whole new one: the data is fsynced before the rename, and the
    directory entry after it (as SQLite and torch.distributed.checkpoint do)."""
    with open(partial, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(partial, path)
    directory = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def atomic_copy(copy):
    """Wrap PathManager.copy so a local target is replaced in one durable rename: always the old or the new file."""

    def copy_atomically(src_path, dst_path, overwrite=False):
        if not PathManager.supports_rename(dst_path) or (os.path.exists(dst_path) and not overwrite):
            return copy(src_path, dst_path, overwrite)
        partial = f"{dst_path}.tmp"
        copy(src_path, partial, True)
        durable_replace(partial, dst_path)
        return True

    return copy_atomically
