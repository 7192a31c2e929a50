"""The Quant-Noise math (Fan, Stock et al., 2020) as module-level functions, as in fairseq's
``fairseq/modules/quant_noise.py``; ``criterions/quant_noise.py`` only wraps a criterion with it.

Unlike fairseq's forward pre-hook, which writes the noised weight into ``weight.data`` (the
stored fp32 weights drift with every step), the noise here is functional: for one call the
modules hold noised tensors that are functions of the parameters (``swapped_parameters``),
with a straight-through gradient, and ``state_dict`` never holds noise.
"""
import contextlib
import functools
import re
from typing import Callable, Collection, Dict, Iterator, Mapping, Optional, Tuple

import torch
from fairseq.modules import checkpoint_activations
from torch import nn
from torch.nn.utils import parametrize

from .scalar_quantizer import fake_quantize

NOISED_MODULES = (nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d)


def straight_through(weight: torch.Tensor, noised: torch.Tensor) -> torch.Tensor:
    """`noised` in the forward pass; in backward the gradient at the noised weight
    reaches `weight` unchanged, dropped blocks included: the paper's straight-through
    estimator, as fairseq's hook gets it by computing with the noised values in place."""
    return weight + (noised - weight).detach()


# Re-implements: fairseq 0.12.3.1 (fairseq-fixed) fairseq.modules.quant_noise.quant_noise's forward pre-hook, the
# nn.Linear / nn.Embedding case (one Bernoulli(p) drop per block of block_size input features of a row,
# survivors scaled by 1 / (1 - p)), but functionally (weight.data is never written), with a straight-through
# gradient, and with convolutions blocked over their flattened input features. No test holds it equal to the
# hook (which writes the stored weights); tests/test_quant_noise.py::test_pq_noise_drops_whole_blocks_and_keeps_the_expectation
# and ::test_pq_noise_gradient_is_straight_through check the math.
def pq_noise(weight: torch.Tensor, p: float, block_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(noised weight, dropped [rows, blocks]): each block of `block_size` consecutive input
    features of a row zeroed with probability p; survivors scaled by 1 / (1 - p), so the
    expectation is the weight."""
    rows = weight.detach().reshape(weight.size(0), -1)
    dropped = torch.rand(rows.size(0), rows.size(1) // block_size, device=weight.device) < p
    keep = (~dropped).repeat_interleave(block_size, dim=1).to(weight.dtype)
    return straight_through(weight, (rows * keep / (1 - p)).view_as(weight)), dropped


def scalar_noise(weight: torch.Tensor, p: float, bits: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(noised weight, chosen): a random subset (prob p) of the weights replaced by their
    fake-quantized values, the scalar quantizer `fairseq-compress quantize` stores them with."""
    chosen = torch.rand_like(weight, dtype=torch.float32) < p
    return torch.where(chosen, fake_quantize(weight, bits), weight), chosen


def noised_parameters(model: nn.Module, exclude: re.Pattern) -> Dict[int, Tuple[str, nn.Parameter]]:
    """{id(weight): (module name, weight)} of the weights that get noise: each
    Linear/Embedding/Conv weight once (tied weights count once) unless every
    module that uses it is excluded."""
    targets = {}
    for module_name, module in noised_modules(model, exclude):
        weight = stored_weight(module)
        targets.setdefault(id(weight), (module_name, weight))
    return targets


def noised_modules(model: nn.Module, exclude: re.Pattern) -> Iterator[Tuple[str, nn.Module]]:
    """(name, module) of the Linear/Embedding/Conv modules whose name `exclude` does not match."""
    for module_name, module in model.named_modules():
        bare = module_name.removeprefix("module.")  # a data-parallel wrapper's prefix
        if isinstance(module, NOISED_MODULES) and not exclude.search(bare):
            yield bare, module


def stored_weight(module: nn.Module) -> nn.Parameter:
    """The weight Parameter; for a parametrized weight (the pruning tasks' masks)
    its original, so the noise goes in under the mask."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


@contextlib.contextmanager
def swapped_parameters(model: nn.Module, replacements: Mapping[int, torch.Tensor],
                       only_in: Optional[Collection[int]] = None) -> Iterator[None]:
    """Every module holding a parameter p with id(p) in `replacements` (and, given
    `only_in`, whose id is in it) holds the replacement instead, for the duration of
    the block: a weight tied to an excluded module (the output projection, an LM head)
    stays exact there. (torch.func.functional_call does the swap too, but with a weight
    tied across three modules, as fairseq ties encoder/decoder embeddings and the
    output projection, it restores the wrong tensor and leaves the noise in the model.)"""
    holders = [(module, name, p) for module in model.modules() for name, p in module._parameters.items()
               if p is not None and id(p) in replacements and (only_in is None or id(module) in only_in)]
    try:
        for module, name, p in holders:
            module._parameters[name] = replacements[id(p)]
        yield
    finally:
        for module, name, p in holders:
            module._parameters[name] = p


# fairseq's checkpoint_wrapper (fairseq 0.12.3, private) sets a wrapped layer's forward to
# ``partial(_checkpointed_forward, original_forward, offload_to_cpu)``; recompute_with_noise rebuilds
# that partial around a noised original_forward. Checked, so that a fairseq which builds it otherwise
# stops the run with one line instead of silently training checkpointed layers without noise.
def checkpointed_forward_change(module: nn.Module) -> Optional[str]:
    """What differs from fairseq 0.12.3's wrapped forward in ``module``, or None."""
    forward = module.forward
    if not isinstance(forward, functools.partial):
        return f"the wrapped forward is a {type(forward).__name__}, not a functools.partial"
    expected = getattr(checkpoint_activations, "_checkpointed_forward", None)
    if forward.func is not expected:
        return f"the partial calls {getattr(forward.func, '__qualname__', forward.func)!r}, not _checkpointed_forward"
    if len(forward.args) != 2 or forward.keywords:
        return (f"the partial binds {len(forward.args)} positional and {sorted(forward.keywords)} keyword "
                f"arguments, not (original_forward, offload_to_cpu)")
    if forward.args[0] is not module.precheckpoint_forward:
        return "the partial's first argument is not the layer's precheckpoint_forward"
    return None


def recompute_with_noise(model: nn.Module, noise_of_step: Dict[int, torch.Tensor], holders: Collection[int]) -> bool:
    """Make the layers that fairseq's ``checkpoint_wrapper`` wraps (``--checkpoint-activations``)
    see the step's noise when backward reruns them. The rerun happens after
    ``swapped_parameters`` has put the real weights back; without this, the
    gradient would be that of the un-noised model. A wrapped layer's forward is
    ``partial(_checkpointed_forward, original_forward, offload)``: the original
    forward is wrapped so that, when it runs with gradients on (the rerun; the first
    pass runs under no_grad inside the swap), it holds the step's noised weights,
    then lets go of them, so they are freed as backward proceeds. Returns whether
    any layer is wrapped."""
    wrapped = False
    for module in model.modules():
        if hasattr(module, "precheckpoint_forward") and not getattr(module, "recomputes_with_noise", False):
            change = checkpointed_forward_change(module)
            if change is not None:
                raise RuntimeError(f"fairseq's checkpoint_wrapper changed ({change}): Quant-Noise cannot reach "
                                   f"{type(module).__name__}'s rerun; update modules/quant_noise.py")
            checkpointed = module.forward
            rerun = with_noise_on_rerun(module, checkpointed.args[0], noise_of_step, holders)
            module.forward = functools.partial(checkpointed.func, rerun, *checkpointed.args[1:])
            module.recomputes_with_noise = True
        wrapped = wrapped or getattr(module, "recomputes_with_noise", False)
    return wrapped


def with_noise_on_rerun(module: nn.Module, forward: Callable, noise_of_step: Dict[int, torch.Tensor],
                        holders: Collection[int]) -> Callable:
    def forward_with_noise(*args, **kwargs):
        if not torch.is_grad_enabled():
            return forward(*args, **kwargs)
        with swapped_parameters(module, noise_of_step, holders):
            output = forward(*args, **kwargs)
        for parameter in module.parameters():
            noise_of_step.pop(id(parameter), None)
        return output

    return forward_with_noise
