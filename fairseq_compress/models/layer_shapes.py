"""Per-layer shapes of a shrunk model (``fairseq-compress shrink``): the model option
``--layer-shapes`` (JSON, written into the checkpoint's model config by shrink; nobody passes it
by hand) narrows the built layers to the shapes their state dict has, so fairseq's own builders
and the stock loaders work unchanged. ``fairseq-generate`` builds the model from the
checkpoint's config, so it has them; ``fairseq-train`` builds it from its command line before
it loads ``--restore-file`` (or the ``checkpoint_last.pt`` it resumes), so the model takes the
shapes and layer counts of that checkpoint when it holds some.

fairseq's ``MultiheadAttention._adaptive_prune_heads`` shrinks one module in place from its
weights; here the shapes come first and the weights are loaded after, so the modules are built
at their final size, with fairseq's own ``skip_embed_dim_check`` for attention narrower than
the model.
"""
import json
import os

from torch import nn

LAYER_COUNTS = ("encoder_layers", "decoder_layers")


def narrowed_linear(linear: nn.Linear, in_features: int, out_features: int) -> nn.Linear:
    return nn.Linear(in_features, out_features, bias=linear.bias is not None,
                     device=linear.weight.device, dtype=linear.weight.dtype)


def narrow_attention(attention: nn.Module, heads: int) -> None:
    """An attention module with `heads` heads of its head_dim (q/k/v rows and out_proj columns)."""
    inner = heads * attention.head_dim
    for name in ("q_proj", "k_proj", "v_proj"):
        proj = getattr(attention, name)
        setattr(attention, name, narrowed_linear(proj, proj.in_features, inner))
    attention.out_proj = narrowed_linear(attention.out_proj, inner, attention.out_proj.out_features)
    attention.num_heads, attention.embed_dim = heads, inner
    attention.skip_embed_dim_check = True  # fairseq's flag for attention narrower than its input


def narrow_ffn(layer: nn.Module, neurons: int) -> None:
    layer.fc1 = narrowed_linear(layer.fc1, layer.fc1.in_features, neurons)
    layer.fc2 = narrowed_linear(layer.fc2, neurons, layer.fc2.out_features)


def apply_layer_shapes(model: nn.Module, shapes: dict) -> None:
    """Narrow every layer of `model` to `shapes` ({stack path: [per layer: {module: size}]})."""
    for stack, layer_shapes in shapes.items():
        layers = model.get_submodule(stack)
        if len(layers) != len(layer_shapes):
            raise ValueError(f"--layer-shapes has {len(layer_shapes)} layers for {stack}, the model {len(layers)}")
        for layer, shape in zip(layers, layer_shapes):
            for name, size in shape.items():
                if name == "ffn":
                    narrow_ffn(layer, size)
                else:
                    narrow_attention(getattr(layer, name), size)


class LayerShapesMixin:
    """Model mixin: ``--layer-shapes``, applied once fairseq has built the model."""

    @classmethod
    def add_args(cls, parser):
        super().add_args(parser)
        parser.add_argument("--layer-shapes", metavar="JSON", default=None,
                            help="per-layer heads and FFN widths of a shrunk model (written by fairseq-compress shrink)")

    @classmethod
    def build_model(cls, args, task):
        if not getattr(args, "layer_shapes", None):
            adopt_shapes_of_restore_file(args)
        model = super().build_model(args, task)
        if getattr(args, "layer_shapes", None):
            apply_layer_shapes(model, json.loads(args.layer_shapes))
        return model


def restore_path(args):
    """The checkpoint fairseq-train will load (its logic: --restore-file, relative to --save-dir
    when it is the default checkpoint_last.pt), or None."""
    restore_file = getattr(args, "restore_file", None)
    if not restore_file:
        return None
    if restore_file == "checkpoint_last.pt":
        restore_file = os.path.join(getattr(args, "save_dir", "checkpoints"), restore_file)
    return restore_file if os.path.isfile(restore_file) else None


def adopt_shapes_of_restore_file(args) -> None:
    """args.layer_shapes and the layer counts of the checkpoint fairseq-train restores, if shrunk."""
    path = restore_path(args)
    if path is None:
        return
    from fairseq import checkpoint_utils  # the safe loader of fairseq_hooks

    from ..checkpoint_info import config_value

    model_cfg = checkpoint_utils.load_checkpoint_to_cpu(path)["cfg"]["model"]
    shapes = config_value(model_cfg, "layer_shapes")
    if shapes:
        args.layer_shapes = shapes
        for count in LAYER_COUNTS:
            value = config_value(model_cfg, count)
            if value is not None and hasattr(args, count):
                setattr(args, count, value)
