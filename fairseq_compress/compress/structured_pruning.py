"""Structured pruning masks (``--prune-granularity head`` / ``neuron`` / ``layer``): whole attention
heads and FFN neurons, chosen like the magnitude masks of magnitude_pruning.py but over units,
each scored by the L2 norm of the weights it owns (already masked weights count as 0, so masks
only grow), or with ``--prune-score gradient`` by Michel et al. (2019)'s importance; and whole
layers (modules/layer_gates.py), evenly spaced as in fairseq's LayerDrop pruning.

A head owns its rows of q_proj / k_proj / v_proj and its columns of out_proj; a neuron its row of
fc1 and its column of fc2. Their masks zero exactly those, so a masked unit contributes nothing
(the q/k/v and fc1 biases stay, but feed only zeroed columns), and ``fairseq-compress shrink``
removes the masked units to give the same function in a smaller model. fairseq's
``_get_reserve_head_index`` / ``_get_fc_rank`` score the same units by L1 norm at load time;
they cannot mask during training.

Michel et al.'s importance of a head is |dL/d xi| for a gate xi on the head's output. A gate on a
unit's output scales its columns of out_proj (fc2 for a neuron), so dL/d xi = sum(W * dL/dW) over
those columns: it is read off the gradients every optimizer step, without a gate in the model.
Each step's values are divided by their sum over all units (fp16 gradients are loss-scaled, and
the scale changes), accumulated until the next mask update, and, as in the paper, normalized by
their L2 norm within each module before units of different modules compete (global scope).
"""
from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple

import torch
from fairseq.modules import MultiheadAttention
from torch import nn
from torch.nn.utils import parametrize

from ..errors import ConfigError
from ..modules.layer_gates import LAYER_TYPES
from ..modules.weight_parametrizations import IMPORTANCE, PRUNING_MASK, PruningMask
from .magnitude_pruning import keep_largest

UNITS = ("head", "neuron")  # granularities of units inside a layer
STRUCTURED = UNITS + ("layer",)
# the state-dict names of a unit's parts, and the dimension its units lie along
HEAD_PARTS = (("q_proj", 0), ("k_proj", 0), ("v_proj", 0), ("out_proj", 1))
NEURON_PARTS = (("fc1", 0), ("fc2", 1))


@dataclass(frozen=True)
class UnitGroup:
    """The units of one module: `units` equal slices of each part, a part being a masked Linear
    and the weight dimension its units lie along (0: rows, 1: columns)."""

    name: str
    units: int
    parts: Tuple[Tuple[nn.Linear, int], ...]


def is_masked(module: nn.Module) -> bool:
    return parametrize.is_parametrized(module, "weight") and isinstance(module.parametrizations.weight[0], PruningMask)


def head_groups(model: nn.Module) -> List[UnitGroup]:
    """Every fairseq attention module whose four projections are pruning targets."""
    groups = []
    for name, module in model.named_modules():
        if isinstance(module, MultiheadAttention):
            parts = tuple((getattr(module, name), dim) for name, dim in HEAD_PARTS)
            if all(is_masked(linear) for linear, _ in parts):
                groups.append(UnitGroup(name, module.num_heads, parts))
    return groups


def neuron_groups(model: nn.Module) -> List[UnitGroup]:
    """Every layer whose fc1 and fc2 are pruning targets."""
    groups = []
    for name, module in model.named_modules():
        fc1, fc2 = getattr(module, "fc1", None), getattr(module, "fc2", None)
        if isinstance(fc1, nn.Linear) and isinstance(fc2, nn.Linear) and is_masked(fc1) and is_masked(fc2):
            groups.append(UnitGroup(name, fc1.out_features, tuple((getattr(module, n), dim) for n, dim in NEURON_PARTS)))
    return groups


GROUPS: Dict[str, Callable[[nn.Module], List[UnitGroup]]] = {"head": head_groups, "neuron": neuron_groups}


def masked_weight(linear: nn.Linear) -> torch.Tensor:
    parametrization = linear.parametrizations.weight
    return parametrization.original * parametrization[0].mask


def by_unit(tensor: torch.Tensor, dim: int, units: int) -> torch.Tensor:
    """[units, everything a unit owns] view of a weight whose units lie along `dim`."""
    return (tensor if dim == 0 else tensor.t()).reshape(units, -1)


@torch.no_grad()
def magnitude_scores(group: UnitGroup) -> torch.Tensor:
    """L2 norm of each unit's weights (masked ones 0), float32."""
    squares = sum(by_unit(masked_weight(linear).float(), dim, group.units).pow(2).sum(1) for linear, dim in group.parts)
    return squares.sqrt()


def deciding_mask(group: UnitGroup) -> PruningMask:
    """The mask of the part a unit's output goes through (out_proj, fc2), which holds its importance."""
    return group.parts[-1][0].parametrizations.weight[0]


def gradient_scores(group: UnitGroup) -> torch.Tensor:
    """The units' accumulated importance, L2-normalized within the group (Michel et al. 2019)."""
    importance = getattr(deciding_mask(group), IMPORTANCE)
    return importance / importance.norm().clamp_min(torch.finfo(importance.dtype).tiny)


SCORES: Dict[str, Callable[[UnitGroup], torch.Tensor]] = {"magnitude": magnitude_scores, "gradient": gradient_scores}


def attach_importance(groups: List[UnitGroup]) -> None:
    for group in groups:
        mask = deciding_mask(group)
        mask.register_buffer(IMPORTANCE, torch.zeros(group.units, dtype=torch.float32, device=mask.mask.device))


@torch.no_grad()
def accumulate_importance(groups: List[UnitGroup]) -> None:
    """Add this step's |sum(W * dL/dW)| over each unit's output columns, as a share of all units' sum;
    no host-device sync (a step without gradients, or a non-finite one, adds nothing)."""
    contributions = []
    for group in groups:
        linear, dim = group.parts[-1]
        parametrization = linear.parametrizations.weight
        grad = parametrization.original.grad
        if grad is not None:
            product = masked_weight(linear).float() * grad.float()
            contributions.append((group, by_unit(product, dim, group.units).sum(1).abs()))
    if not contributions:
        return
    total = sum(contribution.sum() for _, contribution in contributions)
    for group, contribution in contributions:
        share = contribution / total
        getattr(deciding_mask(group), IMPORTANCE).add_(torch.where(share.isfinite(), share, torch.zeros_like(share)))


def reset_importance(groups: List[UnitGroup]) -> None:
    for group in groups:
        getattr(deciding_mask(group), IMPORTANCE).zero_()


def unit_keeps(groups: List[UnitGroup], sparsity: float, scope: str, score: str = "magnitude") -> List[torch.Tensor]:
    """Bool [units] per group: the strongest units by `score` kept, round((1 - sparsity) n) of the n
    units of all groups (global) or of each (layer); each group keeps at least its strongest unit, so
    no attention module or FFN is left empty."""
    scores = [SCORES[score](group) for group in groups]
    keeps = keep_largest(scores, sparsity) if scope == "global" else [keep_largest([s], sparsity)[0] for s in scores]
    for score, keep in zip(scores, keeps):
        if not keep.any():
            keep[score.argmax()] = True
    return keeps


def part_keeps(group: UnitGroup, keep: torch.Tensor) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """(mask buffer, bool tensor of its shape keeping the units `keep`) for each part of `group`."""
    result = []
    for linear, dim in group.parts:
        mask = linear.parametrizations.weight[0].mask
        size = mask.size(dim) // group.units
        along = keep.to(mask.device).repeat_interleave(size)
        result.append((mask, along.view(-1, 1).expand_as(mask) if dim == 0 else along.view(1, -1).expand_as(mask)))
    return result


def layer_stacks(model: nn.Module) -> List[List[nn.Module]]:
    """The encoder/decoder layers holding pruning targets, by stack (the ModuleList they are in)."""
    stacks = []
    for module in model.modules():
        if isinstance(module, nn.ModuleList):
            layers = [layer for layer in module if isinstance(layer, LAYER_TYPES)
                      and any(is_masked(m) for m in layer.modules() if isinstance(m, nn.Linear))]
            if layers:
                stacks.append(layers)
    return stacks


def layer_drop_order(n_layers: int) -> List[int]:
    """Layer indices in the order layers are removed: the odd ones first, then every other of the
    rest, and so on (a fixed order, so masks only grow), the highest first among equals (top layers
    matter least: Sajjad et al. 2020). Half removed leaves 0, 2, 4, ..., fairseq's LayerDrop
    "every other" pruning (Fan et al. 2019); layer 0 is removed last."""
    def trailing_zeros(i: int) -> int:
        return (i & -i).bit_length() - 1 if i else n_layers.bit_length() + 1
    return sorted(range(n_layers), key=lambda i: (trailing_zeros(i), -i))


def layer_keeps(stack: List[nn.Module], sparsity: float) -> List[bool]:
    """Per layer of a stack: kept at `sparsity` (round(sparsity n) removed, at least one kept)."""
    removed = set(layer_drop_order(len(stack))[: min(len(stack) - 1, round(sparsity * len(stack)))])
    return [i not in removed for i in range(len(stack))]


def targets_of(granularity: str, model: nn.Module, targets: str) -> list:
    """The groups (stacks for `layer`) of `granularity`, or a one-line error when the arch has none
    among the targets."""
    groups = layer_stacks(model) if granularity == "layer" else GROUPS[granularity](model)
    if not groups:
        what = {"head": "attention module with q/k/v/out_proj", "neuron": "layer with fc1 and fc2",
                "layer": "encoder/decoder layer with a Linear"}[granularity]
        raise ConfigError(f"--prune-granularity {granularity}: no {what} of --arch {type(model).__name__} is among "
                          f"--prune-targets {targets}")
    return groups


def masked_units(state: Dict[str, torch.Tensor], prefix: str, parts: Tuple[Tuple[str, int], ...],
                 units: int) -> List[int]:
    """The units of the module at `prefix` that the state dict's pruning masks keep: those with any
    kept weight in the column- or row-slice of the last part (out_proj, fc2), which decides."""
    name, dim = parts[-1]
    mask = state.get(f"{prefix}.{name}{PRUNING_MASK}")
    if mask is None:
        return list(range(units))
    return [u for u, kept in enumerate(by_unit(mask, dim, units).any(1).tolist()) if kept]


def check_granularities(text: str) -> List[str]:
    allowed = ("weight",) + STRUCTURED
    chosen = [g.strip() for g in text.split(",") if g.strip()]
    unknown = [g for g in chosen if g not in allowed]
    if not chosen or unknown or len(set(chosen)) != len(chosen):
        raise ConfigError(f"--prune-granularity {text}: a comma-separated set of {', '.join(allowed)}")
    return chosen


def structured_keeps(model: nn.Module, granularity: str, targets: str, sparsity: float, scope: str,
                     score: str = "magnitude") -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """(mask buffer, proposed keep) for every part of every `granularity` unit group of `model`."""
    groups = targets_of(granularity, model, targets)
    keeps = unit_keeps(groups, sparsity, scope, score)
    return [pair for group, keep in zip(groups, keeps) for pair in part_keeps(group, keep)]

