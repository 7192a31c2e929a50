"""Magnitude pruning (and quantization-aware fine-tuning) as fairseq tasks:
``translation_pruning``, ``masked_lm_pruning`` and ``sentence_prediction_pruning``
are the stock tasks plus one mixin.

Masks are ``torch.nn.utils.parametrize`` parametrizations of the target
weights, not ``torch.nn.utils.prune`` hooks: a prune hook recomputes
``module.weight`` only when the module is called, and fairseq's attention
reads ``q_proj.weight`` & co. directly, which would see a stale tensor. A
parametrization recomputes the weight at every access, so the forward pass
always sees ``original * mask``; pruned entries get zero gradient and are
re-zeroed after every optimizer step (Adam's momentum would move them), and the
mask is a buffer, so it is saved in the checkpoint and restored on resume.
Masks are a function of the weights alone, which are identical on every
data-parallel rank, so every rank computes the same masks.

Lottery tickets (``--prune-schedule imp``, Frankle & Carbin 2019; Frankle et al. 2020) run all
their rounds in one fairseq-train, each ``--imp-round-updates`` long: the round boundaries are
updates, so a killed round resumes from ``checkpoint_last.pt`` like any run (the rewind weights
are buffers: of each mask, and of the model's RewindPoint for the other parameters), and nothing
outside fairseq-train has to chain R runs, carry the rewind weights between them, or tell a
resumed round from a new one (``--reset-*`` flags would also reset a resumed round's optimizer).
At each boundary the mask removes ``--imp-rate`` of the surviving weights, the survivors and every
other parameter (embeddings, biases, norms) go back to their values at ``--rewind-update`` (or to a
fresh initialization: ``--ticket-control random-reinit``), Adam's moments restart empty and the LR
schedule restarts at the rewind update (``lr_schedule_update``, applied in fairseq_hooks), as a
new training from that point would; the last round trains the final ticket.
"""
import re
from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.logging import metrics
from fairseq.tasks import register_task
from fairseq.tasks.masked_lm import MaskedLMConfig, MaskedLMTask
from fairseq.tasks.sentence_prediction import SentencePredictionConfig, SentencePredictionTask
from fairseq.tasks.translation import TranslationConfig, TranslationTask
from omegaconf import II
from torch import nn
from torch.nn.utils import parametrize

from ..compress.magnitude_pruning import DEFAULT_TARGETS, magnitude_masks
from ..compress.structured_pruning import (UNITS, accumulate_importance, attach_importance, check_granularities,
                                           layer_keeps, reset_importance, structured_keeps, targets_of)
from ..errors import ConfigError
from ..modules.layer_gates import attach_layer_gates, gated_layers, set_gate
from ..modules.scalar_quantizer import BITS
from ..modules.weight_parametrizations import (PruningMask, QATQuantizer, accept_dense_weight, attach_rewind_point,
                                               fold_once_loaded, masked_weights, rewind_point, rewind_weights)


@dataclass
class PruningOptions(FairseqDataclass):
    prune_sparsity: float = field(default=0.0, metadata={"help": "final fraction of zeros in the targets, in [0, 1)"})
    prune_schedule: ChoiceEnum(["oneshot", "gradual", "imp"]) = field(
        default="oneshot", metadata={"help": "oneshot: prune to --prune-sparsity at --prune-start-update; gradual: "
                                             "the cubic schedule of Zhu & Gupta (2017) up to --prune-end-update; "
                                             "imp: lottery tickets, iterative magnitude pruning with rewinding "
                                             "(--imp-rounds, --imp-rate, --imp-round-updates, --rewind-update)"})
    prune_start_update: int = field(default=0, metadata={"help": "update at which pruning starts"})
    prune_end_update: int = field(default=0, metadata={"help": "gradual: update at which --prune-sparsity is reached"})
    prune_frequency: int = field(default=100, metadata={"help": "gradual: recompute the masks every this many updates"})
    prune_scope: ChoiceEnum(["global", "layer"]) = field(
        default="global", metadata={"help": "global: one magnitude threshold over all targets; layer: one per matrix"})
    prune_targets: str = field(default=DEFAULT_TARGETS, metadata={"help": "regex: Linear modules whose weight is pruned"})
    prune_granularity: str = field(
        default="weight", metadata={"help": "what a mask removes, comma-separated to combine: weight (single weights), "
                                            "head (whole attention heads), neuron (whole FFN neurons), layer (whole "
                                            "encoder/decoder layers, evenly spaced, per stack); --prune-sparsity is "
                                            "the fraction of each removed"})
    prune_score: ChoiceEnum(["magnitude", "gradient"]) = field(
        default="magnitude", metadata={"help": "how heads and neurons are ranked: magnitude (L2 norm of their weights) "
                                               "or gradient (Michel et al. 2019: |dL/d gate| accumulated over the "
                                               "updates since the previous mask update)"})
    imp_rounds: int = field(default=0, metadata={"help": "imp: how many times to prune and rewind; the run trains "
                                                         "--imp-rounds + 1 rounds, the last one the final ticket"})
    imp_rate: float = field(default=0.2, metadata={"help": "imp: fraction of the surviving targets each round "
                                                           "removes, in (0, 1)"})
    imp_round_updates: int = field(default=0, metadata={"help": "imp: updates per round; --max-update must be "
                                                                "(--imp-rounds + 1) x this"})
    rewind_update: int = field(default=0, metadata={"help": "imp: the survivors and every other parameter "
                                                            "rewind to their values at this update of the first "
                                                            "round (0: initialization)"})
    ticket_control: ChoiceEnum(["none", "random-reinit"]) = field(
        default="none", metadata={"help": "imp: random-reinit sets the survivors and every other parameter to a "
                                          "fresh initialization instead of rewinding them (the control of Frankle & "
                                          "Carbin 2019)"})
    qat_bits: Optional[int] = field(
        default=None, metadata={"help": "fake-quantize the targets to this many bits in the forward pass (straight-"
                                        "through), as fairseq-compress quantize will store them"})
    ddp_backend: str = II("distributed_training.ddp_backend")
    max_update: int = II("optimization.max_update")
    fp16: bool = II("common.fp16")
    bf16: bool = II("common.bf16")
    seed: int = II("common.seed")


# the fresh initialization of --ticket-control random-reinit draws from --seed + this: not another seed's own
REINIT_SEED_OFFSET = 1_000_003


def check_options(cfg):
    if cfg.ddp_backend == "fully_sharded":
        raise ConfigError("the *_pruning tasks do not work with --ddp-backend fully_sharded (it flattens the weights "
                          "that masks parametrize); use legacy_ddp, no_c10d or pytorch_ddp")
    if not 0 <= cfg.prune_sparsity < 1:
        raise ConfigError(f"--prune-sparsity must be in [0, 1), got {cfg.prune_sparsity}")
    if cfg.prune_start_update < 0:
        raise ConfigError(f"--prune-start-update must be >= 0, got {cfg.prune_start_update}")
    if cfg.prune_schedule == "gradual":
        if cfg.prune_end_update <= cfg.prune_start_update:
            raise ConfigError(f"--prune-schedule gradual needs --prune-end-update > --prune-start-update "
                              f"({cfg.prune_start_update}), got {cfg.prune_end_update}")
        if cfg.prune_frequency < 1:
            raise ConfigError(f"--prune-frequency must be a positive integer, got {cfg.prune_frequency}")
    granularities = check_granularities(cfg.prune_granularity)
    if cfg.prune_score == "gradient" and not set(granularities) & set(UNITS):
        raise ConfigError(f"--prune-score gradient ranks heads and neurons; --prune-granularity {cfg.prune_granularity} "
                          f"has neither (add head or neuron)")
    try:
        re.compile(cfg.prune_targets)
    except re.error as error:
        raise ConfigError(f"--prune-targets is not a valid regex ({error}): {cfg.prune_targets}") from None
    if cfg.qat_bits is not None and cfg.qat_bits not in BITS:
        raise ConfigError(f"--qat-bits must be one of {', '.join(map(str, BITS))}, got {cfg.qat_bits}")
    if cfg.prune_schedule == "imp":
        check_imp_options(cfg)
    elif cfg.ticket_control != "none":
        raise ConfigError(f"--ticket-control {cfg.ticket_control} is a lottery-ticket control: it needs "
                          f"--prune-schedule imp, got {cfg.prune_schedule}")


def check_imp_options(cfg):
    if cfg.imp_rounds < 1:
        raise ConfigError(f"--imp-rounds must be a positive integer, got {cfg.imp_rounds}")
    if not 0 < cfg.imp_rate < 1:
        raise ConfigError(f"--imp-rate must be in (0, 1), got {cfg.imp_rate}")
    if cfg.imp_round_updates < 1:
        raise ConfigError(f"--prune-schedule imp needs --imp-round-updates >= 1 (the updates of a round), "
                          f"got {cfg.imp_round_updates}")
    if not 0 <= cfg.rewind_update < cfg.imp_round_updates:
        raise ConfigError(f"--rewind-update must be an update of the first round, in [0, --imp-round-updates="
                          f"{cfg.imp_round_updates}), got {cfg.rewind_update}")
    if cfg.ticket_control == "random-reinit" and cfg.rewind_update:
        raise ConfigError(f"--ticket-control random-reinit restarts from a fresh initialization (update 0): "
                          f"--rewind-update must be 0, got {cfg.rewind_update}")
    rounds_updates = (cfg.imp_rounds + 1) * cfg.imp_round_updates
    if cfg.max_update != rounds_updates:
        raise ConfigError(f"--prune-schedule imp trains --imp-rounds + 1 rounds of --imp-round-updates: "
                          f"--max-update must be {rounds_updates}, got {cfg.max_update}")
    if cfg.prune_sparsity:
        raise ConfigError(f"--prune-schedule imp sets the sparsity of round r to 1 - (1 - --imp-rate)^r: drop "
                          f"--prune-sparsity {cfg.prune_sparsity}")
    if cfg.prune_granularity != "weight":
        raise ConfigError(f"--prune-schedule imp prunes single weights: --prune-granularity must be weight, "
                          f"got {cfg.prune_granularity}")
    if cfg.fp16 or cfg.bf16:
        raise ConfigError("--prune-schedule imp trains in fp32: under --fp16 / --bf16 fairseq's fp32 master "
                          "copy of the weights would undo each rewind")


def attach_masks(model, cfg):
    """Parametrize every target weight with an all-ones mask (and fake quantization), gate the
    layers of --prune-granularity layer; returns the head / neuron groups whose importance
    --prune-score gradient accumulates (none otherwise)."""
    targets = [module for name, module in model.named_modules()
               if isinstance(module, nn.Linear) and re.search(cfg.prune_targets, name)]
    if not targets:
        raise ConfigError(f"--prune-targets {cfg.prune_targets} matches no Linear layer of --arch "
                          f"{type(model).__name__}")
    for module in targets:
        parametrize.register_parametrization(module, "weight",
                                             PruningMask(module.weight, rewind=cfg.prune_schedule == "imp"))
        module.register_load_state_dict_pre_hook(accept_dense_weight)
        if cfg.qat_bits is not None:
            parametrize.register_parametrization(module, "weight", QATQuantizer(cfg.qat_bits))
    if cfg.prune_schedule == "imp":
        attach_rewind_point(model)
    scored = []
    for granularity in check_granularities(cfg.prune_granularity):
        if granularity == "layer":
            attach_layer_gates([layer for stack in targets_of("layer", model, cfg.prune_targets) for layer in stack])
        elif granularity in UNITS:
            groups = targets_of(granularity, model, cfg.prune_targets)  # the arch has such units among the targets
            if cfg.prune_score == "gradient":
                attach_importance(groups)
                scored += groups
    return scored


def imp_round(cfg, update):
    """The lottery-ticket round `update` lies in: how many times the weights were pruned before it."""
    return min(update // cfg.imp_round_updates, cfg.imp_rounds)


def target_sparsity(cfg, update):
    """imp: 1 - (1 - F)^r after round r's pruning (F of the survivors each time). Zhu & Gupta (2017):
    s_t = s_f (1 - (1 - (t - t0) / (t1 - t0))^3) between t0 and t1."""
    if cfg.prune_schedule == "imp":
        return 1 - (1 - cfg.imp_rate) ** imp_round(cfg, update)
    if update < cfg.prune_start_update:
        return 0.0
    if cfg.prune_schedule == "oneshot" or update >= cfg.prune_end_update:
        return cfg.prune_sparsity
    progress = (update - cfg.prune_start_update) / (cfg.prune_end_update - cfg.prune_start_update)
    return cfg.prune_sparsity * (1 - (1 - progress) ** 3)


def is_mask_update(cfg, update):
    if cfg.prune_schedule == "imp":
        return update % cfg.imp_round_updates == 0 and 1 <= update // cfg.imp_round_updates <= cfg.imp_rounds
    if cfg.prune_schedule == "oneshot":
        return update == cfg.prune_start_update
    in_range = cfg.prune_start_update <= update <= cfg.prune_end_update
    return in_range and ((update - cfg.prune_start_update) % cfg.prune_frequency == 0 or update == cfg.prune_end_update)


@torch.no_grad()
def update_masks(model, cfg, sparsity):
    """Masks of `sparsity` at each of --prune-granularity (combined: a weight stays if every
    granularity keeps it; layers are gated off besides); already pruned weights score 0, so masks
    only grow sparser as the schedule rises."""
    pairs = list(masked_weights(model))
    for weight, mask in pairs:  # in place, so the scores are the weights (no copy of all of them)
        weight.mul_(mask)
    keeps = {id(mask): torch.ones_like(mask) for _, mask in pairs}
    for granularity in check_granularities(cfg.prune_granularity):
        if granularity == "layer":
            for stack in targets_of("layer", model, cfg.prune_targets):
                for layer, kept in zip(stack, layer_keeps(stack, sparsity)):
                    set_gate(layer, kept and layer.prune_layer_on)
            continue
        if granularity == "weight":
            proposals = zip((mask for _, mask in pairs),
                            magnitude_masks([weight for weight, _ in pairs], sparsity, cfg.prune_scope))
        else:
            proposals = structured_keeps(model, granularity, cfg.prune_targets, sparsity, cfg.prune_scope,
                                         cfg.prune_score)
        for mask, keep in proposals:
            keeps[id(mask)].logical_and_(keep)
    for weight, mask in pairs:
        mask.copy_(keeps[id(mask)])
        weight.mul_(mask)


def lr_schedule_update(cfg, update):
    """Where the LR schedule stands after `update` updates: a lottery-ticket round after the first
    restarts it at --rewind-update, with the weights."""
    if cfg.prune_schedule != "imp" or update < cfg.imp_round_updates:
        return update
    return cfg.rewind_update + update - imp_round(cfg, update) * cfg.imp_round_updates


@torch.no_grad()
def save_rewind_point(model, weights=None):
    """The values every round rewinds to, of every parameter: their current values, or those of
    `weights` (parameter name -> value, a target as NAME.weight: a fresh initialization)."""
    for name, original, _, rewind in rewind_weights(model):
        rewind.copy_(original if weights is None else weights[f"{name}.weight"])
    for name, parameter, rewind in rewind_point(model):
        rewind.copy_(parameter if weights is None else weights[name])


@torch.no_grad()
def rewind(model):
    """Every parameter back at its rewind value: the survivors of each mask (the pruned ones stay
    zero) and all the others."""
    for _, original, mask, rewind_to in rewind_weights(model):
        original.copy_(rewind_to * mask)
    for _, parameter, rewind_to in rewind_point(model):
        parameter.copy_(rewind_to)


@torch.no_grad()
def measured_sparsity(model):
    """Fraction of zeros in the masked targets, as a tensor on the weights' device:
    logging it costs no host-device sync until fairseq prints it."""
    zeros, total = [], 0
    for weight, mask in masked_weights(model):
        zeros.append(((weight * mask) == 0).sum())
        total += weight.numel()
    return sum(zeros).double() / max(total, 1) if zeros else torch.tensor(0.0)  # double: logged as 0.6, not 0.6000000238


class PruningMixin:
    """What the three registered tasks add to their stock parent."""

    def __init__(self, cfg, *args, **kwargs):
        check_options(cfg)
        super().__init__(cfg, *args, **kwargs)
        self.started_update = None
        self.scored_groups, self.gated_layers = [], []

    def build_model(self, cfg, from_checkpoint=False):
        fresh = self.fresh_initialization(cfg, from_checkpoint) if self.cfg.ticket_control == "random-reinit" else None
        model = super().build_model(cfg, from_checkpoint)
        # found once here, not by walking the model at every update
        self.scored_groups = attach_masks(model, self.cfg)
        self.gated_layers = [layer for _, layer in gated_layers(model)]
        if from_checkpoint:  # fairseq builds it to run a checkpoint (generate, validate, the hub), not to train it
            model.register_load_state_dict_post_hook(fold_once_loaded)
        if fresh is not None:
            save_rewind_point(model, fresh)  # a checkpoint resumed from brings its own
        return model

    def fresh_initialization(self, cfg, from_checkpoint):
        """Every parameter of another initialization of the same model (--ticket-control random-reinit),
        built first (so the task keeps what it builds around the real model, e.g. its BLEU generator)
        on its own seed, leaving the run's random stream as the same run without the control has it."""
        with torch.random.fork_rng():
            torch.manual_seed(self.cfg.seed + REINIT_SEED_OFFSET)
            fresh = super().build_model(cfg, from_checkpoint)
        return {name: parameter.detach() for name, parameter in fresh.named_parameters()}

    def lr_schedule_update(self, update):
        return lr_schedule_update(self.cfg, update)

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        # once per update, not per micro-batch (--update-freq): masking again would prune more with
        # combined granularities (a neuron's score reads the weights the first pass masked)
        if update_num != self.started_update:
            self.started_update = update_num
            # gradient scores need this update's gradients: its masks are computed in optimizer_step
            imp = self.cfg.prune_schedule == "imp"
            if imp and update_num == self.cfg.rewind_update and self.cfg.ticket_control == "none":
                save_rewind_point(model)
            if is_mask_update(self.cfg, update_num) and self.cfg.prune_score == "magnitude":
                update_masks(model, self.cfg, target_sparsity(self.cfg, update_num))
                if imp:  # the next round trains the survivors again from the rewind point, with a new optimizer
                    rewind(model)
                    optimizer.optimizer.state.clear()
            metrics.log_scalar("prune_target", target_sparsity(self.cfg, update_num), weight=0, round=3)
            metrics.log_scalar("sparsity", measured_sparsity(model), weight=0, round=3)
            if self.gated_layers:
                kept = sum(layer.prune_layer_on for layer in self.gated_layers)
                metrics.log_scalar("layers_kept", kept / len(self.gated_layers), weight=0, round=3)
        return super().train_step(sample, model, criterion, optimizer, update_num, ignore_grad)

    def optimizer_step(self, optimizer, model, update_num):
        if self.cfg.prune_score == "gradient" and update_num <= max(self.cfg.prune_start_update,
                                                                     self.cfg.prune_end_update):
            accumulate_importance(self.scored_groups)
            if is_mask_update(self.cfg, update_num):
                update_masks(model, self.cfg, target_sparsity(self.cfg, update_num))
                reset_importance(self.scored_groups)
        super().optimizer_step(optimizer, model, update_num)
        with torch.no_grad():
            for weight, mask in masked_weights(model):
                weight.mul_(mask)


# The registered tasks: the stock task with PruningMixin first in its MRO, and its config with the
# PruningOptions flags. Checkpoints store the task name and config fields, so both stay as they are.
@dataclass
class TranslationPruningConfig(PruningOptions, TranslationConfig):
    pass


@register_task("translation_pruning", dataclass=TranslationPruningConfig)
class TranslationPruningTask(PruningMixin, TranslationTask):
    """``translation`` with pruning masks and quantization-aware training."""


@dataclass
class MaskedLMPruningConfig(PruningOptions, MaskedLMConfig):
    pass


@register_task("masked_lm_pruning", dataclass=MaskedLMPruningConfig)
class MaskedLMPruningTask(PruningMixin, MaskedLMTask):
    """``masked_lm`` with pruning masks and quantization-aware training."""


@dataclass
class SentencePredictionPruningConfig(PruningOptions, SentencePredictionConfig):
    pass


@register_task("sentence_prediction_pruning", dataclass=SentencePredictionPruningConfig)
class SentencePredictionPruningTask(PruningMixin, SentencePredictionTask):
    """``sentence_prediction`` with pruning masks and quantization-aware training."""
