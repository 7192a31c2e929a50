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
| ``distributed.utils.call_main`` | joins the world of torchrun's environment, on CPU too; every rank loads the checkpoint it resumes | fairseq reads torchrun only when ``--distributed-world-size`` (default: the GPU count) is above 1, and takes the rank modulo the GPU count as device: on CPU, torchrun started independent single-rank trainings, or divided by zero. fairseq broadcasts rank 0's loaded checkpoint through ``torch.load``, whose safe default (torch >= 2.6) refuses its config: every resume on several ranks crashed |
| ``Trainer.lr_step_update`` | steps the LR schedule at the task's ``lr_schedule_update(num_updates)`` when it has one | a lottery-ticket round (``--prune-schedule imp``) rewinds the LR schedule with the weights; fairseq steps it at the global update count, and no task hook reaches the scheduler |
| ``sys.excepthook`` | one line for a user's error | a bad flag or file is not a traceback |

Each replacement is recorded in ``INSTALLED`` against the original, so a
second ``install()`` does nothing and ``installed()`` can check the chain.

``time_validation()`` changes two more, for ``fairseq-compress timed-validate`` only, in that
command's own process: ``FairseqTask.valid_step`` (timed: fairseq-validate reports no speed) and
``logging.progress_bar.progress_bar`` (cut at ``--max-valid-steps``, which fairseq-train honours
and fairseq-validate ignores).
"""
import os
import sys
import time
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch
from fairseq import checkpoint_utils
from fairseq.data import data_utils
from fairseq.dataclass.configs import DistributedTrainingConfig
from fairseq.distributed import utils as distributed_utils
from fairseq.file_io import PathManager
from fairseq.logging import progress_bar
from fairseq.models import BaseFairseqModel
from fairseq.tasks import FairseqTask
from fairseq.trainer import Trainer

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
    parametrize, and dropping the layer gates and lottery rewind point it lacks: the loading model
    says which to keep, not a process-wide setting."""

    def upgrade_state_dict(model, state_dict):
        if any(name.endswith(weight_parametrizations.PARAMETRIZED_WEIGHT) for name in state_dict):
            keep = (weight_parametrizations.parametrized_weight_names(model)
                    | weight_parametrizations.rewind_point_names(model))
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


# What torchrun (torch.distributed.run) sets for each process it starts, as fairseq reads it.
LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK")
WORLD_SIZE_FLAGS = ("--distributed-world-size", "distributed_training.distributed_world_size")  # argparse, hydra
CUDA_ONLY_DDP_BACKENDS = ("pytorch_ddp", "c10d", "fully_sharded")  # they pass device_ids, which CPU DDP rejects


def world_size_given(world_size: int) -> bool:
    """Whether the user chose fairseq's world size: a value other than its default (the visible
    GPU count), or the flag on the command line (argparse keeps no record of it)."""
    return (world_size != DistributedTrainingConfig.distributed_world_size
            or any(arg.split("=")[0] in WORLD_SIZE_FLAGS for arg in sys.argv[1:]))


def join_launcher_world(cfg) -> None:
    """Take the world, rank and device of torchrun's environment; refuse a world size that
    disagrees with it, and the backends that cannot run on CPU."""
    dist = cfg.distributed_training
    world_size = int(os.environ["WORLD_SIZE"])
    if world_size_given(dist.distributed_world_size) and dist.distributed_world_size != world_size:
        raise errors.ConfigError(f"--distributed-world-size {dist.distributed_world_size} disagrees with the "
                                 f"launcher's WORLD_SIZE={world_size}: drop the flag (the launcher sets the world) "
                                 f"or start {dist.distributed_world_size} processes")
    on_cuda = torch.cuda.is_available() and not cfg.common.cpu
    if not on_cuda and world_size > 1:
        if dist.distributed_backend != "gloo":
            raise errors.ConfigError(f"--distributed-backend {dist.distributed_backend} needs CUDA; on CPU pass "
                                     f"--distributed-backend gloo")
        if dist.ddp_backend in CUDA_ONLY_DDP_BACKENDS:
            raise errors.ConfigError(f"--ddp-backend {dist.ddp_backend} needs CUDA; on CPU pass --ddp-backend "
                                     f"legacy_ddp (or no_c10d)")
    dist.distributed_world_size = world_size
    dist.distributed_rank = int(os.environ["RANK"])
    dist.distributed_init_method = "env://"
    dist.distributed_no_spawn = True  # torchrun started the processes
    # torchrun names each process's GPU; without one the device is the CPU, which has no index
    dist.device_id = int(os.environ.get("LOCAL_RANK", 0)) if on_cuda else 0


def distributed_call_main(call_main: Callable) -> Callable:
    """fairseq's call_main, in the world of torchrun's environment when it started the process,
    and with every rank loading the checkpoint it resumes from through the safe loader (fairseq's
    own flag, --load-checkpoint-on-all-dp-ranks) instead of unpickling rank 0's copy."""

    def call_main_distributed(cfg, main, **kwargs):
        if cfg.distributed_training.distributed_init_method is None and all(key in os.environ for key in LAUNCHER_ENV):
            join_launcher_world(cfg)
        if cfg.distributed_training.distributed_world_size > 1:
            cfg.checkpoint.load_checkpoint_on_all_dp_ranks = True
        return call_main(cfg, main, **kwargs)

    return call_main_distributed


def lr_schedule_of_the_task(lr_step_update: Callable) -> Callable:
    """fairseq's per-update LR step, at the position the task's schedule names for this update."""

    def lr_step_update_at_task_position(trainer):
        position = getattr(trainer.task, "lr_schedule_update", None)
        if position is None:
            return lr_step_update(trainer)
        scheduler = trainer.lr_scheduler
        step_update = scheduler.step_update
        scheduler.step_update = lambda num_updates: step_update(position(num_updates))  # for this one call
        try:
            return lr_step_update(trainer)
        finally:
            del scheduler.step_update

    return lr_step_update_at_task_position


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
        (distributed_utils, "call_main", distributed_call_main, False),
        (Trainer, "lr_step_update", lr_schedule_of_the_task, False),
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


def time_validation(totals: Dict[str, float], max_valid_steps: Optional[int]) -> None:
    """fairseq-compress timed-validate: every valid step (the criterion's forward under no_grad) timed into
    totals["seconds"] and its sentences counted into totals["sentences"], model loading and data reading
    excluded; each subset cut to its first `max_valid_steps` batches when given. No task the plugin validates
    (sentence_prediction and its _pruning twin) overrides valid_step."""
    valid_step = FairseqTask.valid_step

    def timed_valid_step(self, sample, model, criterion):
        start = time.perf_counter()
        result = valid_step(self, sample, model, criterion)
        if torch.cuda.is_available():  # CUDA kernels run asynchronously: wait for this step's
            torch.cuda.synchronize()
        totals["seconds"] += time.perf_counter() - start
        totals["sentences"] += int(result[2].get("nsentences", 0))
        return result

    FairseqTask.valid_step = timed_valid_step
    if max_valid_steps is not None:
        # fairseq_cli.validate hands each subset's CountingIterator to the progress bar; take() truncates it.
        bar = progress_bar.progress_bar
        progress_bar.progress_bar = lambda iterator, **kwargs: bar(iterator.take(max_valid_steps), **kwargs)
