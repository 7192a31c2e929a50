"""The ``torch.nn.utils.parametrize`` parametrizations of a pruned (and quantization-aware)
weight, and how checkpoints store them.

A target ``Linear`` of the pruning tasks has ``PruningMask`` as its first parametrization and,
with ``--qat-bits``, ``QATQuantizer`` as its second; its state dict then holds
``NAME.parametrizations.weight.original`` and ``NAME.parametrizations.weight.0.mask`` in place
of ``NAME.weight``. A model without those parametrizations (a stock arch in
``fairseq-generate``, ``fairseq-compress``) reads the pruned weight ``original * mask`` instead:
``fold_pruning_masks``, applied where fairseq upgrades a state dict for the model that loads it
(``fairseq_hooks``). A pruning task's model built to run a checkpoint (``fairseq-generate``,
``fairseq-validate``) folds its parametrizations once loaded (``fold_once_loaded``).

A lottery-ticket run (``--prune-schedule imp``) also holds its rewind point: each target's in its
``PruningMask`` (``NAME.parametrizations.weight.0.rewind``), every other parameter's in the model's
``RewindPoint`` (``lottery_rewind_point.*``); both are dropped with the rest of the mask state.
"""
from typing import Collection, Dict, Iterator, List, Tuple

import torch
from torch import nn
from torch.nn.utils import parametrize

from .scalar_quantizer import fake_quantize

PARAMETRIZED_WEIGHT = ".parametrizations.weight.original"
PRUNING_MASK = ".parametrizations.weight.0.mask"
IMPORTANCE = "importance"
REWIND = "rewind"
REWIND_POINT = "lottery_rewind_point"
_PARAMETRIZATION_STATE = ".parametrizations.weight."


class PruningMask(nn.Module):
    """weight * mask; the mask is a bool buffer (saved, restored on resume), all ones at first.
    With ``--prune-score gradient`` the mask of a unit's deciding part (out_proj, fc2) also holds
    the units' accumulated importance (``importance``, structured_pruning.py). With ``--prune-schedule
    imp`` it holds the weights a lottery-ticket round rewinds to (``rewind``), in the checkpoint so a
    round resumes exactly; ``fairseq-compress`` and stock models drop it with the other mask state."""

    def __init__(self, weight: torch.Tensor, rewind: bool = False):
        super().__init__()
        self.register_buffer("mask", torch.ones_like(weight, dtype=torch.bool))
        if rewind:
            self.register_buffer(REWIND, weight.detach().clone())
        self.register_load_state_dict_pre_hook(optional_state_as_built)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask

    def _apply(self, fn, recurse=True):
        """Moves the importance with the model but keeps it float32 when fairseq casts the model
        (``model.half()`` under --fp16, bfloat16 under --bf16): summed over many steps in fp16,
        a unit's share stops counting (1024 + 0.25 == 1024). torch cannot exempt a buffer from a cast."""
        importance = self._buffers.get(IMPORTANCE)
        super()._apply(fn, recurse)
        if importance is not None:
            self._buffers[IMPORTANCE] = importance.to(self._buffers[IMPORTANCE].device)
        return self


def optional_state_as_built(mask: PruningMask, state_dict: Dict[str, torch.Tensor], prefix: str, *args) -> None:
    """A checkpoint pruned otherwise than the model loading it: importance (zero as built) and rewind
    weights (the loading model's own) stay as built where the checkpoint has none, and are dropped
    where the model has none."""
    for buffer in (IMPORTANCE, REWIND):
        name = prefix + buffer
        if hasattr(mask, buffer):
            state_dict.setdefault(name, getattr(mask, buffer))
        else:
            state_dict.pop(name, None)


class RewindPoint(nn.Module):
    """The values a lottery-ticket round rewinds every parameter to that is not a masked target
    (embeddings, biases, layer norms, heads; each target's ``PruningMask`` holds its own): a round
    restarts the whole network from the rewind point, as Frankle & Carbin 2019 and Frankle et al. 2020
    (open_lth) do, not only the pruned layers, which would leave the rest trained for every round so far.
    Buffers, so they are in each checkpoint and a round resumes exactly."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.names: List[str] = [name for name, _ in model.named_parameters() if _PARAMETRIZATION_STATE not in name]
        for name in self.names:
            self.register_buffer(self.buffer_name(name), model.get_parameter(name).detach().clone())
        self.register_load_state_dict_pre_hook(rewind_point_as_built)

    @staticmethod
    def buffer_name(parameter: str) -> str:
        return parameter.replace(".", "__")  # a buffer's name cannot hold dots


def rewind_point_as_built(point: RewindPoint, state_dict: Dict[str, torch.Tensor], prefix: str, *args) -> None:
    """A checkpoint without a rewind point (--restore-file of a dense or pruned model): the loading
    model's own values stay until the run saves its rewind point."""
    for name, value in point.named_buffers():
        state_dict.setdefault(prefix + name, value)


def attach_rewind_point(model: nn.Module) -> None:
    """Give a lottery-ticket model, its targets already parametrized, the rewind point of its other parameters."""
    model.add_module(REWIND_POINT, RewindPoint(model))


def rewind_point(model: nn.Module) -> Iterator[Tuple[str, nn.Parameter, torch.Tensor]]:
    """(parameter name, parameter, rewind value) of every parameter the model's RewindPoint holds (none
    without one; `model` may be fairseq's distributed wrapper around it)."""
    for owner in model.modules():
        point = owner._modules.get(REWIND_POINT)
        if isinstance(point, RewindPoint):
            for name in point.names:
                yield name, owner.get_parameter(name), point.get_buffer(point.buffer_name(name))


def rewind_point_names(model: nn.Module) -> set:
    """The lottery_rewind_point.* entries of `model`'s own state dict."""
    return {name for name, _ in model.named_buffers() if f"{REWIND_POINT}." in name}


class QATQuantizer(nn.Module):
    """The scalar quantizer of ``fairseq-compress quantize`` as a parametrization (symmetric per
    output row, straight-through): quantization-aware training. Not torch.ao's FakeQuantize,
    which observes a running range instead of each step's weight."""

    def __init__(self, bits: int):
        super().__init__()
        self.bits = bits

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return fake_quantize(weight, self.bits)


def masked_weights(model: nn.Module) -> Iterator[Tuple[nn.Parameter, torch.Tensor]]:
    """(original weight, mask) of every weight parametrized with a PruningMask."""
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrizations = module.parametrizations.weight
            if isinstance(parametrizations[0], PruningMask):
                yield parametrizations.original, parametrizations[0].mask


def rewind_weights(model: nn.Module) -> Iterator[Tuple[str, nn.Parameter, torch.Tensor, torch.Tensor]]:
    """(module name, original weight, mask, rewind weights) of every PruningMask holding rewind weights."""
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrizations = module.parametrizations.weight
            if hasattr(parametrizations[0], REWIND):
                yield name, parametrizations.original, parametrizations[0].mask, getattr(parametrizations[0], REWIND)


def accept_dense_weight(module: nn.Module, state_dict: Dict[str, torch.Tensor], prefix: str, *args) -> None:
    """``register_load_state_dict_pre_hook`` of a masked module: a dense checkpoint's NAME.weight
    (--restore-file of an unpruned model) becomes the original, with nothing pruned yet."""
    if prefix + "weight" in state_dict:
        weight = state_dict.pop(prefix + "weight")
        state_dict[prefix + PARAMETRIZED_WEIGHT[1:]] = weight
        state_dict.setdefault(prefix + PRUNING_MASK[1:], torch.ones_like(weight, dtype=torch.bool))


def fold_pruning_masks(model_state: Dict[str, torch.Tensor],
                       keep: Collection[str] = ()) -> Dict[str, torch.Tensor]:
    """NAME.weight = original * mask for every masked weight of `model_state`, as stock models
    expect, except the NAME.parametrizations.weight.original entries in `keep`, which stay as
    they are with their mask (the loading model parametrizes them); a lottery ticket's rewind
    point dropped, except its entries in `keep`."""
    folded = {}
    for name, tensor in model_state.items():
        if f"{REWIND_POINT}." in name and name not in keep:
            continue
        if name.endswith(PARAMETRIZED_WEIGHT) and name not in keep:
            prefix = name[: -len(PARAMETRIZED_WEIGHT)]
            mask = model_state.get(prefix + PRUNING_MASK)
            folded[prefix + ".weight"] = tensor * mask if mask is not None else tensor
        elif _PARAMETRIZATION_STATE not in name or name[: name.index(_PARAMETRIZATION_STATE)] + PARAMETRIZED_WEIGHT in keep:
            folded[name] = tensor
    return folded


def parametrized_weight_names(model: nn.Module) -> set:
    """The NAME.parametrizations.weight.original entries of `model`'s own state dict."""
    return {f"{name}{PARAMETRIZED_WEIGHT}" if name else PARAMETRIZED_WEIGHT[1:]
            for name, module in model.named_modules() if parametrize.is_parametrized(module, "weight")}


def without_parametrizations(model: nn.Module) -> nn.Module:
    """A pruning task's model holds its weights as parametrizations (original x mask,
    fake quantization with --qat-bits): make each the plain weight it computes; a lottery ticket's
    rewind point, training state, goes."""
    for module in list(model.modules()):
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
        if isinstance(module._modules.get(REWIND_POINT), RewindPoint):
            delattr(module, REWIND_POINT)
    return model


def fold_once_loaded(model: nn.Module, _incompatible_keys) -> None:
    """``register_load_state_dict_post_hook`` of a model that runs a checkpoint: its weights become
    what the parametrizations compute from the loaded state, once, instead of at every forward
    (every decoding step of fairseq-generate)."""
    without_parametrizations(model)
