"""ELECTRA's replaced-token-detection loss on the stock ``masked_lm`` task.

The task masks the input (``--mask-prob 0.15 --leave-unmasked-prob 0.15
--random-token-prob 0``) and gives the original token at masked positions as
target; this criterion runs the generator there, samples replacements, and
trains the discriminator to tell replaced tokens from original ones:
loss = L_gen (mean cross-entropy over masked positions)
     + disc_weight * L_disc (mean binary cross-entropy over all non-pad tokens).
"""
import logging
import math
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from fairseq import utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics
from fairseq.utils import safe_getattr
from omegaconf import II

from ..errors import ConfigError
from ..models.electra import ELECTRA_SIZES, MODEL_NAME

ELECTRA_ARCHS = "|".join(ELECTRA_SIZES)

logger = logging.getLogger(__name__)


@dataclass
class ElectraCriterionConfig(FairseqDataclass):
    disc_weight: float = field(default=50.0, metadata={"help": "weight of the discriminator loss (the paper: 50)"})
    gen_temperature: float = field(default=1.0, metadata={"help": "softmax temperature of the generator's sampling"})
    arch: Optional[str] = II("model._name")  # criteria are built without the model


def gumbel_sample(logits, temperature):
    """One token per row from softmax(logits / temperature), by Gumbel-max."""
    uniform = torch.rand_like(logits, dtype=torch.float32).clamp_(1e-9, 1.0)
    return (logits.float() / temperature - torch.log(-torch.log(uniform))).argmax(dim=-1)


@register_criterion("electra", dataclass=ElectraCriterionConfig)
class ElectraCriterion(FairseqCriterion):
    def __init__(self, cfg: ElectraCriterionConfig, task):
        super().__init__(task)
        if not cfg.disc_weight >= 0:
            raise ConfigError(f"--disc-weight must be >= 0, got {cfg.disc_weight}")
        if not cfg.gen_temperature > 0:
            raise ConfigError(f"--gen-temperature must be > 0, got {cfg.gen_temperature}")
        require_electra_arch(safe_getattr(cfg, "arch", None))
        self.disc_weight = cfg.disc_weight
        self.gen_temperature = cfg.gen_temperature
        random_token_prob = safe_getattr(getattr(task, "cfg", None), "random_token_prob", 0.0) or 0.0
        if random_token_prob > 0:
            logger.warning(f"--random-token-prob is {random_token_prob}: ELECTRA expects 0 "
                           "(85 % [MASK], 15 % kept; the generator makes the replacements)")

    def forward(self, model, sample, reduce=True):
        parts = self.losses(model, sample)
        # Two means over different counts: the loss is already normalized (sample_size 1).
        loss = parts["gen_loss"] / parts["n_masked"].clamp(min=1) + self.disc_weight * parts["disc_loss"] / parts["n_tokens"]
        predicted, labels = parts["disc_logits"] > 0, parts["labels"]
        # Counts stay tensors on the model's device: fairseq sums them across ranks
        # and reads them once per update, so the step adds no host-device sync.
        logging_output = {
            "loss": loss.data,
            "gen_loss": parts["gen_loss"].data,
            "disc_loss": parts["disc_loss"].data,
            "n_masked": parts["n_masked"],
            "n_tokens": parts["n_tokens"],
            "n_replaced": labels.sum(),
            "disc_correct": predicted.eq(labels).sum(),
            "disc_correct_replaced": (predicted & labels).sum(),
            "ntokens": sample["ntokens"],
            "nsentences": sample["nsentences"],
            "sample_size": 1,
        }
        return loss, 1, logging_output

    def losses(self, model, sample):
        """Summed generator and discriminator losses, the discriminator's logits and
        labels over non-pad tokens, and the counts that turn sums into means."""
        if getattr(model, "generator", None) is None:
            raise ConfigError(f"--criterion electra needs an ELECTRA model with its generator "
                              f"(--arch {ELECTRA_ARCHS}), got {type(model).__name__}")
        masked_input = sample["net_input"]["src_tokens"]
        target = sample["target"]
        masked = target.ne(self.padding_idx)
        original = torch.where(masked, target, masked_input)
        not_pad = masked_input.ne(self.padding_idx)

        # one call of the (possibly data-parallel) model runs generator and discriminator
        disc_out, extra = model(masked_input, generator_mask=masked,
                                sample_replacements=lambda logits: gumbel_sample(logits, self.gen_temperature))
        gen_loss = F.cross_entropy(extra["gen_logits"].float(), target[masked], reduction="sum")
        disc_logits = disc_out[not_pad].float()
        labels = extra["corrupted"].ne(original)[not_pad]  # replaced = the sample differs from the original
        disc_loss = F.binary_cross_entropy_with_logits(disc_logits, labels.float(), reduction="sum")
        return {"gen_loss": gen_loss, "disc_loss": disc_loss, "disc_logits": disc_logits, "labels": labels,
                "n_masked": masked.sum(), "n_tokens": not_pad.sum()}

    @staticmethod
    def reduce_metrics(logging_outputs):
        def total(key):  # once per update, where fairseq reads its own meters too
            return utils.item(sum(log.get(key, 0) for log in logging_outputs))

        n_masked, n_tokens, n_replaced = total("n_masked"), total("n_tokens"), total("n_replaced")
        metrics.log_scalar("loss", total("loss") / max(total("sample_size"), 1), total("sample_size"), round=3)
        # gen_loss in base 2 per masked token, as masked_lm logs its loss (ppl = 2 ** gen_loss).
        metrics.log_scalar("gen_loss", total("gen_loss") / max(n_masked, 1) / math.log(2), n_masked, round=3)
        metrics.log_derived("gen_ppl", lambda meters: 2 ** meters["gen_loss"].avg)
        metrics.log_scalar("disc_loss", total("disc_loss") / max(n_tokens, 1), n_tokens, round=4)
        metrics.log_scalar("disc_acc", 100 * total("disc_correct") / max(n_tokens, 1), n_tokens, round=2)
        if n_replaced:
            metrics.log_scalar("disc_acc_replaced", 100 * total("disc_correct_replaced") / n_replaced,
                               n_replaced, round=2)
        metrics.log_scalar("replaced_frac", 100 * n_replaced / max(n_tokens, 1), n_tokens, round=2)

    @staticmethod
    def logging_outputs_can_be_summed():
        return True


def require_electra_arch(arch):
    if arch is not None and arch != MODEL_NAME and arch not in ELECTRA_SIZES:
        raise ConfigError(f"--criterion electra needs an ELECTRA model (--arch {ELECTRA_ARCHS}), got {arch}")
