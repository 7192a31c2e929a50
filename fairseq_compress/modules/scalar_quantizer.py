"""The one scalar quantizer: symmetric, one scale per output row, b bits.

``fairseq-compress quantize`` stores weights with ``scalar_quantize``; QAT
(``--qat-bits``) and scalar Quant-Noise (``--qn-scalar``) train against
``fake_quantize``, the same rounding, so the noise models the quantizer the
model will be stored with. By hand rather than ``torch.fake_quantize_per_channel_affine``:
torch has no signed sub-8-bit dtype, and one formula serves 8, 6 and 4 bits alike.
"""
from typing import Tuple

import torch

BITS = (2, 3, 4, 5, 6, 7, 8)  # what --bits, --qat-bits and --qn-bits accept

def scalar_quantize(weight: torch.Tensor, bits: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(integer values in [-q, q], fp32 scale per output row) with q = 2^(bits-1) - 1."""
    q_max = 2 ** (bits - 1) - 1
    rows = weight.detach().float().reshape(weight.size(0), -1)
    scale = rows.abs().amax(1).clamp_min(1e-12) / q_max
    return torch.round(rows / scale[:, None]).clamp(-q_max, q_max).to(torch.int16).reshape(weight.shape), scale


def dequantize(values: torch.Tensor, scale: torch.Tensor, shape) -> torch.Tensor:
    """fp32 weights of `shape` from integer values and their per-row scales."""
    return (values.float().reshape(shape[0], -1) * scale[:, None]).reshape(shape)


def fake_quantize(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """`weight` rounded as ``scalar_quantize`` stores it, in the weight's dtype and on its
    device; the gradient passes straight through."""
    quantized = dequantize(*scalar_quantize(weight, bits), weight.shape)
    return weight + (quantized.to(weight.dtype) - weight).detach()
