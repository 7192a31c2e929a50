"""Quant-Noise (Fan, Stock et al., 2020) as a criterion that wraps any of the
usual criteria: during training, the inner criterion sees the model with
noised weights, for every architecture.

fairseq's own ``quant_noise`` (fairseq/modules/quant_noise.py) is a forward
pre-hook that writes the noised weight into ``weight.data``, so the stored
fp32 weights drift with every step, and only archs that call it get noise.
Here the noise is functional: for the inner criterion's call, the modules hold
noised tensors that are functions of the parameters, so gradients reach the
parameters and ``state_dict`` never holds noise. Noise is
drawn from torch's global generator, which fairseq's trainer seeds with
seed + num_updates before each update: a resumed run draws the same noise.
"""
import re
from dataclasses import dataclass, field

from omegaconf import II
from fairseq import utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics
from fairseq.utils import safe_getattr
from torch.nn.utils import parametrize

from ..errors import ConfigError
from .inner_criterion import chosen_inner_class, subclass_for, with_inner_options
from ..modules.quant_noise import (noised_modules, noised_parameters, pq_noise, recompute_with_noise, scalar_noise,
                                   swapped_parameters)
from ..modules.scalar_quantizer import BITS

INNER_CRITERIA = ("cross_entropy", "label_smoothed_cross_entropy", "masked_lm", "sentence_prediction", "electra")
# The output layer stays exact, as in the paper: decoder output projection, LM heads, classifier heads;
# so do learned positional embeddings, which fairseq's quant_noise never noises either.
DEFAULT_EXCLUDE = r"(^|\.)(output_projection|lm_head|classification_heads|embed_positions)(\.|$)"


@dataclass
class QuantNoiseOptions(FairseqDataclass):
    qn_criterion: str = field(default="cross_entropy", metadata={"help": f"the criterion trained with noise: {', '.join(INNER_CRITERIA)}"})
    qn_pq: float = field(default=0.0, metadata={"help": "PQ noise: probability of zeroing each block of weights, in [0, 1)"})
    qn_block_size: int = field(default=8, metadata={"help": "PQ block: this many consecutive input features of one output row"})
    qn_scalar: float = field(default=0.0, metadata={"help": "scalar noise: probability that a weight is replaced by its fake-quantized value"})
    qn_bits: int = field(default=8, metadata={"help": "bits of the scalar noise's fake quantization"})
    qn_exclude: str = field(default=DEFAULT_EXCLUDE, metadata={"help": "regex: modules whose name matches get no noise"})
    ddp_backend: str = II("distributed_training.ddp_backend")


QuantNoiseConfig = with_inner_options("QuantNoiseConfig", QuantNoiseOptions, INNER_CRITERIA)


@register_criterion("quant_noise", dataclass=QuantNoiseConfig)
class QuantNoiseCriterion(FairseqCriterion):
    inner_class = None  # set per inner criterion by build_criterion (fairseq reduces metrics per class)

    def __init__(self, cfg, task, inner):
        super().__init__(task)
        self.inner = inner
        self.pq, self.block_size = cfg.qn_pq, cfg.qn_block_size
        self.scalar, self.bits = cfg.qn_scalar, cfg.qn_bits
        self.exclude = re.compile(cfg.qn_exclude)
        self.targets = self.holders = None  # found at the first training step
        self.reruns_layers = False
        # {id(weight): noised weight} of the current step, kept for layers that
        # --checkpoint-activations reruns in backward (see recompute_with_noise)
        self.noise_of_step = {}

    @classmethod
    def build_criterion(cls, cfg, task):
        check_options(cfg)
        inner = chosen_inner_class("--qn-criterion", cfg.qn_criterion, INNER_CRITERIA)
        return subclass_for(cls, inner)(cfg, task, inner.build_criterion(cfg, task))

    def forward(self, model, sample, reduce=True):
        if not model.training or (self.pq == 0 and self.scalar == 0):
            self.noise_of_step.clear()
            return self.inner(model, sample, reduce)
        if self.targets is None:  # criteria are built without the model: check its layers at the first step
            self.targets = noised_parameters(model, self.exclude)
            check_targets(self.targets, self.block_size, self.pq)
            # the modules that see noise; a tied weight's excluded holders stay exact
            self.holders = {id(module) for module in self.noised_holders(model)}
            self.reruns_layers = recompute_with_noise(model, self.noise_of_step, self.holders)
        # Counts stay tensors on the weights' device: fairseq sums them with the
        # other logging outputs, so noising adds no host-device sync to the step.
        noised, stats = {}, {"qn_blocks": 0, "qn_blocks_dropped": 0, "qn_weights": 0, "qn_weights_quantized": 0}
        for key, (_, weight) in self.targets.items():
            if self.scalar > 0:
                weight, chosen = scalar_noise(weight, self.scalar, self.bits)
                stats["qn_weights"] += chosen.numel()
                stats["qn_weights_quantized"] += chosen.sum()
            if self.pq > 0:
                weight, dropped = pq_noise(weight, self.pq, self.block_size)
                stats["qn_blocks"] += dropped.numel()
                stats["qn_blocks_dropped"] += dropped.sum()
            noised[key] = weight
        if self.reruns_layers:  # kept past the step only for the layers backward reruns
            self.noise_of_step.clear()
            self.noise_of_step.update(noised)
        with swapped_parameters(model, noised, self.holders):
            loss, sample_size, logging_output = self.inner(model, sample, reduce)
        logging_output.update(stats)
        return loss, sample_size, logging_output

    def noised_holders(self, model):
        """The noised modules plus their parametrizations (a pruning mask holds the original)."""
        for _, module in noised_modules(model, self.exclude):
            yield module
            if parametrize.is_parametrized(module, "weight"):
                yield module.parametrizations.weight

    @classmethod
    def reduce_metrics(cls, logging_outputs):
        cls.inner_class.reduce_metrics(logging_outputs)
        def total(key):  # a number, as fairseq's criteria read them: the meters are saved in checkpoints
            return utils.item(sum(log.get(key, 0) for log in logging_outputs))

        for count, noised, name in (("qn_blocks_dropped", "qn_blocks", "qn_pq"), ("qn_weights_quantized", "qn_weights", "qn_scalar")):
            n = total(noised)
            if n:  # the fraction actually noised
                metrics.log_scalar(name, total(count) / n, n, round=4)

    def logging_outputs_can_be_summed(self):
        return self.inner.logging_outputs_can_be_summed()


def check_options(cfg):
    if safe_getattr(cfg, "ddp_backend", None) == "fully_sharded":
        raise ConfigError("--criterion quant_noise does not work with --ddp-backend fully_sharded (it flattens the "
                          "weights that the noise replaces module by module); use legacy_ddp, no_c10d or pytorch_ddp")
    for flag, p in (("--qn-pq", cfg.qn_pq), ("--qn-scalar", cfg.qn_scalar)):
        if not 0 <= p < 1:
            raise ConfigError(f"{flag} must be in [0, 1), got {p}")
    if cfg.qn_block_size < 1:
        raise ConfigError(f"--qn-block-size must be a positive integer, got {cfg.qn_block_size}")
    if cfg.qn_bits not in BITS:
        raise ConfigError(f"--qn-bits must be in [2, 8], got {cfg.qn_bits}")
    try:
        re.compile(cfg.qn_exclude)
    except re.error as error:
        raise ConfigError(f"--qn-exclude is not a valid regex ({error}): {cfg.qn_exclude}") from None


def check_targets(targets, block_size, pq):
    if not targets:
        raise ConfigError("--qn-exclude excludes every Linear/Embedding/Conv layer: nothing gets quantization noise")
    if pq > 0:
        for module_name, weight in targets.values():
            features = weight[0].numel()
            if features % block_size:
                raise ConfigError(f"--qn-block-size {block_size} must divide the input features of every noised layer; "
                                  f"{module_name} has {features} (exclude it with --qn-exclude or pick a divisor)")
