"""Training against wall-clock time, as "Train Large, Then Compress" (Li et al.
2020) compares model sizes: ``translation_timed`` and ``masked_lm_timed`` are
the stock tasks plus one mixin that

- stops after ``--stop-time-minutes`` of *training* time (fairseq's
  ``--stop-time-hours`` also counts validation and checkpoint saving, which
  would charge a model for how often its curve is sampled), through the stock
  stop: the last update is validated and saved like any ``--max-update`` stop;
- validates every ``--validate-interval-seconds`` of training time, so curves of
  models with very different update speeds have points at the same times;
- appends one JSON line per validation to ``--curve-file`` (default
  SAVE_DIR/curve.jsonl): training seconds, updates, tokens seen, the valid
  loss, ppl and BLEU (``--eval-bleu``) when logged, parameters and a FLOPs
  estimate.

fairseq's loop decides when to validate and stop from the run's config
(``dataset.validate_interval_updates``, ``optimization.max_update``) at the end
of every update; the task sets those at the update's optimizer step, just
before, and every data-parallel rank takes the same decision (one all-reduce
per update). A run stops after the first update that ends past the budget.
A resumed run continues the curve from the restored update: the clock and
token count are those of the last point at or before it.
"""
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq import utils
from fairseq.tasks.masked_lm import MaskedLMConfig, MaskedLMTask
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from fairseq.dataclass import FairseqDataclass
from fairseq.tasks import register_task

from ..checkpoint_safety import durable_replace
from ..errors import ConfigError

CURVE_NAME = "curve.jsonl"
# Per point: the validation stats that exist for the task and criterion.
CURVE_STATS = ("loss", "nll_loss", "ppl", "bleu", "accuracy")


@dataclass
class TimedOptions(FairseqDataclass):
    stop_time_minutes: float = field(
        default=0.0, metadata={"help": "stop after this many minutes of training time (validation and checkpoint "
                                       "saving excluded), with a validated checkpoint; 0 = no limit"})
    validate_interval_seconds: float = field(
        default=0.0, metadata={"help": "also validate after every this many seconds of training time; 0 = off"})
    curve_file: Optional[str] = field(
        default=None, metadata={"help": f"JSON lines, one per validation (default: SAVE_DIR/{CURVE_NAME})"})


def check_options(cfg):
    for flag in ("stop_time_minutes", "validate_interval_seconds"):
        value = getattr(cfg, flag)
        if not (value >= 0 and math.isfinite(value)):
            raise ConfigError(f"--{flag.replace('_', '-')} must be a number >= 0, got {value}")


def check_drophead_schedule(model, stop_time_minutes):
    """DropHead's V rises back to p at --max-update; a run stopped by its time budget
    ends at an update nobody knows in advance (the sweep configs set a sentinel
    --max-update), so the V would never rise: refuse it, before training."""
    schedule = getattr(model, "drophead_schedule", None)
    if stop_time_minutes and schedule and schedule.p > 0 and schedule.schedule == "v":
        raise ConfigError(f"--drophead-schedule v rises to p at --max-update ({schedule.max_update}), but "
                          f"--stop-time-minutes {stop_time_minutes:g} stops the run by time: pass --drophead-schedule "
                          f"constant, or train by updates (--max-update T, --stop-time-minutes 0)")


def flops_estimate(params, tokens):
    """Training FLOPs ~ 6 x parameters x tokens (Kaplan et al. 2020: forward 2N,
    backward 4N per token; attention's quadratic term ignored)."""
    return 6 * params * tokens


def latest_clock(seconds):
    """The largest training time of the data-parallel ranks: every rank decides from it, so
    they validate and stop at the same updates (their own clocks differ a little)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return seconds
    if torch.distributed.get_world_size() == 1:
        return seconds
    return max_over_ranks(seconds)


def collective_device():
    """Where a collective's tensor must live: NCCL reduces CUDA tensors only, gloo CPU ones."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def max_over_ranks(value):
    reduced = torch.tensor([float(value)], dtype=torch.float64, device=collective_device())
    torch.distributed.all_reduce(reduced, op=torch.distributed.ReduceOp.MAX)
    return reduced.item()


def is_master():
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) \
        or torch.distributed.get_rank() == 0


class TrainingClock:
    """Training seconds: runs from a train step to the next validation, and
    stands still through validation and checkpoint saving."""

    def __init__(self, seconds=0.0):
        self.seconds = seconds
        self.running_since = None

    def run(self):
        if self.running_since is None:
            self.running_since = time.perf_counter()

    def pause(self):
        if self.running_since is not None:
            self.seconds += time.perf_counter() - self.running_since
            self.running_since = None

    def elapsed(self):
        running = time.perf_counter() - self.running_since if self.running_since is not None else 0.0
        return self.seconds + running


def read_curve(path, up_to_update):
    """The points of an earlier run of this save dir up to the restored update."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        points = [json.loads(line) for line in f if line.strip()]
    return [p for p in points if p["updates"] <= up_to_update]


def write_curve(path, points):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.writelines(json.dumps(p) + "\n" for p in points)
    durable_replace(tmp, path)


class TimedMixin:
    """What the registered ``*_timed`` tasks add to their stock parent."""

    def __init__(self, cfg, *args, **kwargs):
        check_options(cfg)
        super().__init__(cfg, *args, **kwargs)
        self.clock = None  # started at the first train step, when the restored update is known
        self.tokens = 0
        self.points = []
        self.validating = False  # from the start of a validation to the next train step
        self.point_recorded = False  # this validation's point (first valid subset) is written
        self.next_validation = None

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        check_drophead_schedule(model, self.cfg.stop_time_minutes)
        return model

    # -- the root of fairseq's config, which its loop reads after every update. The task writes
    # optimization.max_update and dataset.validate_interval_updates there to stop and to
    # validate on time; an II interpolation could only read them.
    def root_config(self):
        return self.cfg._get_root()

    def curve_path(self):
        if self.cfg.curve_file:
            return self.cfg.curve_file
        return os.path.join(self.root_config().checkpoint.save_dir, CURVE_NAME)

    def start(self, update_num):
        """First train step of this process: continue the curve of a resumed run."""
        self.points = read_curve(self.curve_path(), update_num) if update_num > 0 else []
        last = self.points[-1] if self.points else {}
        self.clock = TrainingClock(last.get("train_seconds", 0.0))
        self.tokens = last.get("tokens", 0)
        interval = self.cfg.validate_interval_seconds
        self.next_validation = (math.floor(self.clock.seconds / interval) + 1) * interval if interval else None
        self.user_validate_interval_updates = self.root_config().dataset.validate_interval_updates
        if is_master():
            os.makedirs(os.path.dirname(os.path.abspath(self.curve_path())), exist_ok=True)
            write_curve(self.curve_path(), self.points)

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        if self.clock is None:
            self.start(update_num)
        self.validating = False
        self.clock.run()
        return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)

    def optimizer_step(self, optimizer, model, update_num):
        super().optimizer_step(optimizer, model, update_num)
        self.plan_checks(update_num)

    def plan_checks(self, update_num):
        """Update update_num has run: do fairseq validate and/or stop after it?
        (``num_updates % (update_num + 1) == 0`` and ``num_updates >= update_num + 1``
        hold right after this update.)"""
        seconds = latest_clock(self.clock.elapsed())
        budget = self.cfg.stop_time_minutes * 60
        if budget and seconds >= budget:
            self.root_config().optimization.max_update = update_num + 1
        if self.next_validation is not None and seconds >= self.next_validation:
            self.root_config().dataset.validate_interval_updates = update_num + 1
            while self.next_validation <= seconds:
                self.next_validation += self.cfg.validate_interval_seconds

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        if not self.validating:  # the logging outputs of one update, gathered from all ranks
            # a count: with several ranks fairseq's stats sync hands it back as a float64 tensor
            self.tokens += int(utils.item(sum(log.get("ntokens", 0) for log in logging_outputs)))

    def begin_valid_epoch(self, epoch, model):
        super().begin_valid_epoch(epoch, model)
        self.validating, self.point_recorded = True, False
        if self.clock is not None:
            self.clock.pause()

    def post_validate(self, model, stats, agg):
        parent = getattr(super(), "post_validate", None)
        if parent is not None:
            parent(model, stats, agg)
        if self.clock is None or self.point_recorded:  # no training yet, or a second valid subset
            return
        self.point_recorded = True
        self.root_config().dataset.validate_interval_updates = self.user_validate_interval_updates
        params = sum(p.numel() for p in model.parameters())
        point = {"train_seconds": round(self.clock.seconds, 3), "updates": int(stats["num_updates"]),
                 "tokens": int(self.tokens), "params": params, "flops": flops_estimate(params, self.tokens)}
        point.update({key: float(stats[key]) for key in CURVE_STATS if key in stats})
        if getattr(self.cfg, "eval_bleu", False):
            point.setdefault("bleu", 0.0)  # fairseq logs no BLEU when every hypothesis is empty
        self.points = [p for p in self.points if p["updates"] < point["updates"]] + [point]
        if is_master():
            write_curve(self.curve_path(), self.points)


# The registered tasks: the stock task with TimedMixin first in its MRO, and its config with the
# TimedOptions flags. Checkpoints store the task name and config fields, so both stay as they are.
@dataclass
class TranslationTimedConfig(TimedOptions, TranslationConfig):
    pass


@register_task("translation_timed", dataclass=TranslationTimedConfig)
class TranslationTimedTask(TimedMixin, TranslationTask):
    """``translation`` trained against wall-clock time."""


@dataclass
class MaskedLMTimedConfig(TimedOptions, MaskedLMConfig):
    pass


@register_task("masked_lm_timed", dataclass=MaskedLMTimedConfig)
class MaskedLMTimedTask(TimedMixin, MaskedLMTask):
    """``masked_lm`` trained against wall-clock time."""
