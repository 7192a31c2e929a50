"""Layer gates (``--prune-granularity layer``): a whole encoder/decoder layer switched off in
training, so that it computes the identity, as the smaller model without it does.

Masking a layer's weights would not do it: a post-norm layer with zero weights still applies its
LayerNorms. The gate wraps the layer's ``forward`` (as fairseq's own ``checkpoint_wrapper`` does,
so the two compose) and returns the layer's input when the gate is off. The gate is a bool buffer
(``NAME.prune_layer_kept``: saved, restored bitwise on resume) mirrored in a Python attribute, so
the forward pass branches without a host-device sync. ``fairseq-compress shrink`` removes the
gated-off layers; fairseq's LayerDrop pruning (``--encoder-layers-to-keep``) removes layers the
same way at load time but cannot choose them during training.
"""
import functools
from typing import Dict, Iterator, List, Tuple

import torch
from fairseq.modules.transformer_layer import TransformerDecoderLayerBase, TransformerEncoderLayerBase
from torch import nn

from ..errors import ConfigError

GATE = "prune_layer_kept"
LAYER_TYPES = (TransformerEncoderLayerBase, TransformerDecoderLayerBase)


def gated_layers(model: nn.Module) -> Iterator[Tuple[str, nn.Module]]:
    for name, module in model.named_modules():
        if hasattr(module, GATE):
            yield name, module


def _skipped_output(layer: nn.Module, x: torch.Tensor):
    """What a removed layer gives: its input. In training the output still depends (times 0) on
    the layer's parameters, so a data-parallel run without --find-unused-parameters sees every
    parameter get its (zero) gradient. Summed in float32: an fp16 sum overflows to inf past 65504,
    and inf * 0 is NaN."""
    if torch.is_grad_enabled() and layer.training:
        x = x + sum(p.sum(dtype=torch.float32) for p in layer.parameters() if p.requires_grad) * 0
    if isinstance(layer, TransformerDecoderLayerBase):
        return x, None, None  # (x, attention weights, self-attention state), as fairseq's decoder layer returns
    return x


def _gated_forward(layer: nn.Module, forward, x, *args, **kwargs):
    if layer.prune_layer_on:
        return forward(x, *args, **kwargs)
    return _skipped_output(layer, x)


def _mirror_gate(layer: nn.Module, *_) -> None:
    layer.prune_layer_on = bool(getattr(layer, GATE))


def _accept_gateless_state(layer: nn.Module, state_dict: Dict[str, torch.Tensor], prefix: str, *args) -> None:
    """A checkpoint without gates (dense, or pruned at other granularities) keeps every layer."""
    state_dict.setdefault(prefix + GATE, torch.ones((), dtype=torch.bool))


def attach_layer_gates(layers: List[nn.Module]) -> None:
    for layer in layers:
        layer.register_buffer(GATE, torch.ones((), dtype=torch.bool, device=next(layer.parameters()).device))
        layer.prune_layer_on = True
        layer.forward = functools.partial(_gated_forward, layer, layer.forward)
        layer._register_load_state_dict_pre_hook(functools.partial(_accept_gateless_state, layer))
        layer.register_load_state_dict_post_hook(_mirror_gate)


def set_gate(layer: nn.Module, kept: bool) -> None:
    getattr(layer, GATE).fill_(kept)
    layer.prune_layer_on = kept


def gates_in(state: Dict[str, torch.Tensor]) -> Dict[str, bool]:
    """{layer prefix: kept} of the layer gates a state dict holds."""
    return {name[: -len(GATE) - 1]: bool(value) for name, value in state.items() if name.endswith("." + GATE)}


def drop_gates(state: Dict[str, torch.Tensor], path: str = "the checkpoint") -> Dict[str, torch.Tensor]:
    """The state dict for a model without gates: the gate entries removed, or a one-line error when
    a gate is off (only a gated model, or a shrunk one, computes without that layer)."""
    removed = sorted(prefix for prefix, kept in gates_in(state).items() if not kept)
    if removed:
        raise ConfigError(f"{path} has layers removed by --prune-granularity layer ({', '.join(removed)}): a model "
                          "without the pruning task's layer gates would still run them; remove them with "
                          "fairseq-compress shrink --path CKPT --out SMALL.pt, or load it with its pruning task")
    return without_gates(state)


def without_gates(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    return {name: value for name, value in state.items() if not name.endswith("." + GATE)}
