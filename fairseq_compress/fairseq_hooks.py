"""Every change this plugin makes to fairseq's own behaviour, in one place.

``install()`` (run by ``import fairseq_compress``) replaces these fairseq
functions, each once, whatever was imported first:

| fairseq attribute | becomes | why |
|---|---|---|
| ``checkpoint_utils.load_checkpoint_to_cpu`` | ``load_checkpoint`` | torch's safe unpickler with the allow-list, one-line errors for unsafe or damaged files, the int8 override, compressed files decoded |
| ``BaseFairseqModel.upgrade_state_dict`` | folds pruning masks first | a pruning task's checkpoint stores ``original`` and ``mask``; a model without those parametrizations (a stock arch in ``fairseq-generate``) reads ``original * mask`` as its weight, a pruning task's model keeps them; layer gates it lacks are dropped, or refused in one line when one is off |
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
from fairseq.models import BaseFairseqModel

from . import checkpoint_safety, errors
from .compress import checkpoint_format
from .modules import int8_inference, layer_gates, weight_parametrizations

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


def fold_pruning_masks(upgrade: Callable) -> Callable:
    """fairseq's state-dict upgrade, after folding the pruning masks this model does not
    parametrize, and dropping the layer gates it lacks: the loading model says which to keep, not
    a process-wide setting."""

    def upgrade_state_dict(model, state_dict):
        if any(name.endswith(weight_parametrizations.PARAMETRIZED_WEIGHT) for name in state_dict):
            keep = weight_parametrizations.parametrized_weight_names(model)
            folded = weight_parametrizations.fold_pruning_masks(state_dict, keep)
            if not any(layer_gates.gated_layers(model)):
                folded = layer_gates.drop_gates(folded)
            state_dict.clear()  # fairseq upgrades in place
            state_dict.update(folded)
        return upgrade(model, state_dict)

    return upgrade_state_dict


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


def _replacements():
    """(owner, attribute, make replacement from the original, is a staticmethod), as in the table above."""
    return [
        (checkpoint_utils, "load_checkpoint_to_cpu", load_checkpoint, False),
        (BaseFairseqModel, "upgrade_state_dict", fold_pruning_masks, False),
        (PathManager, "copy", checkpoint_safety.atomic_copy, True),
        (PathManager, "rename", lambda rename: checkpoint_safety.durable_replace, True),
        (data_utils, "batch_by_size", keep_last_batch, False),
        (sys, "excepthook", errors.print_user_errors, False),
    ]


def install() -> None:
    checkpoint_safety.allow_fairseq_checkpoint_globals()
    for owner, name, make, static in _replacements():
        _replace(owner, name, make, static)


def installed() -> bool:
    """Whether every replacement is the one in effect."""
    return len(INSTALLED) == len(_replacements()) and all(
        getattr(owner, name) is new for (owner, name), (_, new) in INSTALLED.items())
