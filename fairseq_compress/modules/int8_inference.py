"""int8 inference on CPU: ``fairseq-generate ... --model-overrides "{'int8_inference': True}"``
swaps every ``nn.Linear`` of a plugin model for torch's dynamic int8 Linear
(``torch.ao.quantization.quantize_dynamic``'s default: weights quantized once, one scale per
matrix, activations per batch, fbgemm/onednn kernels) when fairseq prepares
the model for inference, or at its first forward where no tool does (fairseq-validate)."""
import logging

import torch
from fairseq.modules import MultiheadAttention
from fairseq.utils import safe_getattr
from torch import nn

from ..errors import ConfigError
from .weight_parametrizations import without_parametrizations

OVERRIDE = "int8_inference"
logger = logging.getLogger(__name__)


def quantize_linear_int8(model):
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise ConfigError("--model-overrides int8_inference runs torch's CPU int8 kernels: add --cpu")
    for module in model.modules():
        if isinstance(module, MultiheadAttention):
            # fairseq's fused attention path reads q_proj.weight & co. as tensors;
            # its standard path calls the projections, which may then be int8 modules.
            module.skip_embed_dim_check = True
    # A model holding its weights as parametrizations (a pruning task's, unless built to run a checkpoint,
    # which folds them at load) cannot be swapped by quantize_dynamic: int8 takes what they compute.
    without_parametrizations(model)
    count = sum(isinstance(m, nn.Linear) for m in model.modules())
    torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=True)
    logger.info(f"int8 inference: {count} Linear layers run with torch's dynamic int8 kernels")


def _quantize_at_first_forward(model, _inputs):
    if model.training:
        raise ConfigError("--int8-inference is an inference option (--model-overrides \"{'int8_inference': True}\" "
                          "at fairseq-generate / fairseq-validate), not for training")
    model.quantize_for_inference()


class Int8InferenceMixin:
    """Model mixin: the ``int8_inference`` model option, applied in ``prepare_for_inference_``
    (fairseq-generate, fairseq-interactive, the generator hub) or, for the tools that never call
    it (fairseq-validate, the RoBERTa hub), at the model's first forward."""

    @classmethod
    def add_args(cls, parser):
        super().add_args(parser)
        parser.add_argument("--int8-inference", action="store_true",
                            help="at inference (fairseq-generate, fairseq-validate), run the Linear layers with "
                                 "dynamic int8 kernels on CPU; usually set with --model-overrides")

    @classmethod
    def build_model(cls, args, task):
        model = super().build_model(args, task)
        model.int8_inference = bool(safe_getattr(args, OVERRIDE, False))
        model._int8_pending = model.register_forward_pre_hook(_quantize_at_first_forward) if model.int8_inference else None
        return model

    def prepare_for_inference_(self, cfg):
        super().prepare_for_inference_(cfg)
        if self.int8_inference:
            self.quantize_for_inference()

    def quantize_for_inference(self):
        """Swap the Linear layers for int8 ones, once (the model's device checked then, not at load)."""
        if self._int8_pending is not None:
            quantize_linear_int8(self)
            self._int8_pending.remove()
            self._int8_pending = None


def accept_override(state, arg_overrides):
    """Checkpoints written before the option existed lack the key, and fairseq
    only overrides keys a checkpoint's model config has: add it."""
    if not arg_overrides or OVERRIDE not in arg_overrides or not isinstance(state, dict):
        return
    from omegaconf import DictConfig, open_dict

    model_cfg = state.get("cfg", {}).get("model") if state.get("cfg") is not None else None
    if isinstance(model_cfg, DictConfig) and OVERRIDE not in model_cfg:
        with open_dict(model_cfg):
            model_cfg[OVERRIDE] = arg_overrides[OVERRIDE]
