"""Scheduled DropHead (Zhou et al., 2020): drop whole attention heads in training.

    MultiHead = Concat(xi_1 * head_1, ..., xi_H * head_H) W_O,  xi_i ~ Bernoulli(1 - p)

The mask is drawn per example and head, shared over positions, and applied to
the per-head context *before* the output projection (after it, heads are mixed).
Survivors are rescaled by H / (kept heads of that example); an example whose
heads are all dropped keeps them all. Eval mode, p = 0 and incremental decoding
run fairseq's own attention unchanged. The rate follows a V-shaped schedule
over training updates (``DropHeadSchedule``).
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from fairseq import utils
from fairseq.logging import metrics
from fairseq.modules import MultiheadAttention
from fairseq.utils import safe_getattr

from ..errors import ConfigError
from ..run_config import run_setting

SCHEDULES = ("v", "constant")


def drophead_mask(batch_size, num_heads, p, device=None):
    """[batch, heads] multipliers: 0 for a dropped head, H / kept for a kept one."""
    keep = torch.rand(batch_size, num_heads, device=device) >= p
    keep |= ~keep.any(dim=1, keepdim=True)  # an example never loses all its heads
    return keep * (num_heads / keep.sum(dim=1, keepdim=True))


def effective_rate(p, modules):
    """The fraction of heads actually dropped, averaged over the modules: since an example
    never loses all its H heads, a head is dropped with probability p - p^H (0.21, not
    0.3, at H = 2; 0 at H = 1)."""
    return sum(p - p ** m.num_heads for m in modules) / max(len(modules), 1)


@dataclass(frozen=True)
class DropHeadSchedule:
    """The rate of DropHead over training: ``constant``: p. ``v``: falls linearly from p to 0
    over the first W = warmup_updates updates, then rises linearly back to p at the last
    update T = max_update (p_start = p_end = p)."""

    p: float
    schedule: str = "v"
    warmup_updates: int = 0
    max_update: int = 0

    def rate(self, num_updates: int) -> float:
        if self.schedule == "constant" or self.p == 0:
            return self.p
        if num_updates < self.warmup_updates:
            return self.p * (1 - num_updates / self.warmup_updates)
        if self.max_update <= self.warmup_updates:
            return 0.0
        return self.p * min(1.0, (num_updates - self.warmup_updates) / (self.max_update - self.warmup_updates))


class DropHeadMultiheadAttention(MultiheadAttention):
    """fairseq's ``MultiheadAttention`` with DropHead at rate ``drophead_p``.

    The rate is a plain attribute set by the model on every update, so it adds
    nothing to the state dict and the module loads stock checkpoints as is.
    """

    drophead_p = 0.0

    def forward(
        self,
        query,
        key,
        value,
        key_padding_mask=None,
        incremental_state=None,
        need_weights=True,
        static_kv=False,
        attn_mask=None,
        before_softmax=False,
        need_head_weights=False,
    ):
        # Incremental decoding and before_softmax (raw scores, no output) only happen
        # outside training; add_bias_kv / add_zero_attn are refused at conversion.
        stock = not self.training or self.drophead_p == 0 or incremental_state is not None or before_softmax
        if stock:
            return super().forward(
                query, key, value, key_padding_mask, incremental_state, need_weights,
                static_kv, attn_mask, before_softmax, need_head_weights,
            )
        return self._drophead_forward(query, key, value, key_padding_mask, need_weights or need_head_weights,
                                      attn_mask, need_head_weights)

    def _split_heads(self, x):
        """[time, batch, embed] -> [batch, heads, time, head_dim]"""
        time, batch, _ = x.shape
        return x.view(time, batch, self.num_heads, self.head_dim).permute(1, 2, 0, 3)

    @staticmethod
    def _additive_mask(key_padding_mask, attn_mask, shape, dtype, device):
        """fairseq's padding [batch, src] and causal [tgt, src] masks as one additive mask."""
        if key_padding_mask is None and attn_mask is None:
            return None
        mask = torch.zeros(shape, dtype=dtype, device=device)
        if key_padding_mask is not None:
            mask = mask.masked_fill(key_padding_mask.bool()[:, None, None, :], float("-inf"))
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:
                attn_mask = torch.zeros_like(attn_mask, dtype=dtype).masked_fill(attn_mask, float("-inf"))
            mask = mask + attn_mask
        return mask

    # Re-implements: fairseq 0.12.3.1 (fairseq-fixed) fairseq.modules.multihead_attention.MultiheadAttention.forward,
    # the training path without incremental_state, add_bias_kv or add_zero_attn (with _split_heads and
    # _additive_mask above), plus the DropHead mask before out_proj. Held equal, every head kept (outputs and
    # weights), by tests/test_drophead.py::test_drophead_path_with_every_head_kept_equals_stock_in_training.
    def _drophead_forward(self, query, key, value, key_padding_mask, need_weights, attn_mask, need_head_weights=False):
        """DropHead attention; the weights returned are fairseq's: the attention
        probabilities before dropout, in float32, [heads, batch, tgt, src] with
        ``need_head_weights``, else averaged over heads."""
        tgt_len, batch, _ = query.shape
        q = self._split_heads(self.q_proj(query))
        k = self._split_heads(self.k_proj(key))
        v = self._split_heads(self.v_proj(value))
        mask = self._additive_mask(
            key_padding_mask, attn_mask, (batch, 1, tgt_len, k.size(2)), q.dtype, q.device
        )
        weights = None
        if need_weights:  # scaled_dot_product_attention does not return the weights
            scores = torch.matmul(q * self.scaling, k.transpose(-1, -2))
            # as fairseq: the softmax in float32, whose probabilities are the weights returned
            probs = utils.softmax(scores if mask is None else scores + mask, dim=-1)
            context = torch.matmul(self.dropout_module(probs.type_as(v)), v)
            weights = probs.transpose(0, 1) if need_head_weights else probs.mean(dim=1)
        else:
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout_module.p)
        heads = drophead_mask(batch, self.num_heads, self.drophead_p, device=q.device)
        context = context * heads.to(context.dtype)[:, :, None, None]
        # num_heads x head_dim: the query's width, or less in a shrunk model (fairseq-compress shrink)
        context = context.permute(2, 0, 1, 3).reshape(tgt_len, batch, self.num_heads * self.head_dim)
        return self.out_proj(context), weights


class ScheduledDropHeadMixin:
    """Model mixin: ``--drophead-*`` flags, DropHead attention in every attention
    module, and the scheduled rate set from ``set_num_updates`` (so a resumed run,
    whose update count comes from the checkpoint, continues the schedule)."""

    @classmethod
    def add_args(cls, parser):
        super().add_args(parser)
        group = parser.add_argument_group("Scheduled DropHead")
        group.add_argument("--drophead-p", type=float, metavar="P", default=0.0,
                           help="DropHead rate p in [0, 1); 0 turns it off")
        group.add_argument("--drophead-schedule", choices=SCHEDULES, default="v",
                           help="v: p -> 0 over the warmup, then back to p at --max-update")
        group.add_argument("--drophead-warmup-updates", type=int, metavar="W", default=None,
                           help="bottom of the V (default: the lr scheduler's --warmup-updates)")

    @classmethod
    def build_model(cls, args, task):
        schedule = drophead_schedule(args)  # checked before the model is built
        model = super().build_model(args, task)
        model.drophead_schedule = schedule
        model.drophead_modules = use_drophead_attention(model)
        model.set_num_updates(0)
        return model

    def set_num_updates(self, num_updates):
        super().set_num_updates(num_updates)
        rate = self.drophead_schedule.rate(num_updates)
        for module in self.drophead_modules:
            module.drophead_p = rate
        if self.drophead_schedule.p > 0:
            metrics.log_scalar("drophead_p", rate, weight=0, round=4)
            metrics.log_scalar("drophead_p_effective", effective_rate(rate, self.drophead_modules), weight=0, round=4)


def drophead_schedule(args) -> DropHeadSchedule:
    """The schedule from the model args, validated."""
    p = safe_getattr(args, "drophead_p", 0.0)
    schedule = safe_getattr(args, "drophead_schedule", "v")
    max_update = run_setting(args, "max_update", "optimization", 0)
    warmup = safe_getattr(args, "drophead_warmup_updates", None)
    if warmup is None:
        warmup = run_setting(args, "warmup_updates", "lr_scheduler", 0)
    if not 0 <= p < 1:
        raise ConfigError(f"--drophead-p must be in [0, 1), got {p}")
    if schedule not in SCHEDULES:
        raise ConfigError(f"--drophead-schedule must be one of {', '.join(SCHEDULES)}, got {schedule}")
    if p > 0 and schedule == "v":
        if max_update <= 0:
            raise ConfigError("--drophead-schedule v needs --max-update > 0 (the top of the V's second arm)")
        if not 0 <= warmup <= max_update:
            raise ConfigError(
                f"--drophead-warmup-updates must be in [0, --max-update={max_update}], got {warmup}"
            )
    return DropHeadSchedule(p, schedule, warmup, max_update)


def use_drophead_attention(model):
    """Turn every stock attention module of a built model into DropHead attention.

    fairseq builds attention deep inside its layer classes; converting the built
    instances (DropHead adds no parameters) keeps every stock builder and weight
    layout instead of subclassing each encoder and decoder layer class.
    """
    modules = [m for m in model.modules() if type(m) is MultiheadAttention]
    if model.drophead_schedule.p > 0:
        if not modules:
            raise ConfigError(f"--drophead-p {model.drophead_schedule.p}: {type(model).__name__} has no fairseq "
                              f"MultiheadAttention module to drop heads in")
        if any(m.bias_k is not None or m.add_zero_attn for m in modules):
            raise ConfigError("--drophead-p > 0 does not support attention with add_bias_kv / add_zero_attn")
    for module in modules:
        module.__class__ = DropHeadMultiheadAttention
    return modules
