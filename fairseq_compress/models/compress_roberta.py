"""RoBERTa encoder of the size sweeps: ``roberta_l{L}_h{H}``.

The model class is the stock fairseq RoBERTa (so ``masked_lm`` pretraining and
``sentence_prediction`` fine-tuning work unchanged); it gets its own
registration so the DropHead, quant-noise and pruning features have one class
to extend.
"""
from fairseq.models import register_model, register_model_architecture
from fairseq.models.roberta import RobertaModel
from fairseq.models.roberta.model import base_architecture
from fairseq.utils import safe_getattr

from ..modules.int8_inference import Int8InferenceMixin
from ..modules.scheduled_drophead import ScheduledDropHeadMixin
from .layer_shapes import LayerShapesMixin
from .activation_checkpointing import ActivationCheckpointingMixin
from .arch_grid import FFN_RATIO, heads_for, register_sized_archs

MODEL_NAME = "compress_roberta"


@register_model(MODEL_NAME)
class CompressRobertaModel(ActivationCheckpointingMixin, Int8InferenceMixin, ScheduledDropHeadMixin,
                           LayerShapesMixin, RobertaModel):
    pass


def set_roberta_size(args, layers, width):
    args.encoder_layers = safe_getattr(args, "encoder_layers", layers)
    args.encoder_embed_dim = safe_getattr(args, "encoder_embed_dim", width)
    args.encoder_ffn_embed_dim = safe_getattr(args, "encoder_ffn_embed_dim", FFN_RATIO * width)
    args.encoder_attention_heads = safe_getattr(args, "encoder_attention_heads", heads_for(width))


register_sized_archs(MODEL_NAME, "roberta", set_roberta_size, base_architecture)
# a stock fairseq `roberta` checkpoint after fairseq-compress shrink: its config holds every size
register_model_architecture(MODEL_NAME, "shrunk_roberta")(base_architecture)
