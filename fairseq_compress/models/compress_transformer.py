"""Encoder-decoder Transformer of the size sweeps, ``transformer_l{L}_h{H}``, and of the
distillation students, ``transformer_e{E}d{D}_h{H}``.

The model class is the stock fairseq Transformer; it gets its own registration
so the DropHead, quant-noise and pruning features have one class to extend.
"""
from fairseq.models import register_model, register_model_architecture
from fairseq.models.transformer import TransformerModel
from fairseq.models.transformer.transformer_legacy import base_architecture
from fairseq.utils import safe_getattr

from ..modules.int8_inference import Int8InferenceMixin
from ..modules.scheduled_drophead import ScheduledDropHeadMixin
from .layer_shapes import LayerShapesMixin
from .arch_grid import FFN_RATIO, heads_for, register_sized_archs, register_student_archs

MODEL_NAME = "compress_transformer"


@register_model(MODEL_NAME)
class CompressTransformerModel(Int8InferenceMixin, ScheduledDropHeadMixin, LayerShapesMixin, TransformerModel):
    pass


def set_transformer_shape(args, encoder_layers, decoder_layers, width):
    for side, layers in (("encoder", encoder_layers), ("decoder", decoder_layers)):
        setattr(args, f"{side}_layers", safe_getattr(args, f"{side}_layers", layers))
        setattr(args, f"{side}_embed_dim", safe_getattr(args, f"{side}_embed_dim", width))
        setattr(
            args,
            f"{side}_ffn_embed_dim",
            safe_getattr(args, f"{side}_ffn_embed_dim", FFN_RATIO * width),
        )
        setattr(
            args,
            f"{side}_attention_heads",
            safe_getattr(args, f"{side}_attention_heads", heads_for(width)),
        )
        # Pre-norm: post-norm stacks of 12-24 layers diverge without special care.
        setattr(
            args,
            f"{side}_normalize_before",
            safe_getattr(args, f"{side}_normalize_before", True),
        )
    # One joint (sentencepiece) dictionary: source, target and output embeddings shared.
    args.share_all_embeddings = safe_getattr(args, "share_all_embeddings", True)


def set_transformer_size(args, layers, width):
    set_transformer_shape(args, layers, layers, width)


register_sized_archs(MODEL_NAME, "transformer", set_transformer_size, base_architecture)
register_student_archs(MODEL_NAME, set_transformer_shape, base_architecture)
# a stock fairseq `transformer` checkpoint after fairseq-compress shrink: its config holds every size
register_model_architecture(MODEL_NAME, "shrunk_transformer")(base_architecture)
