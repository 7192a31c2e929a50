"""Magnitude pruning masks, shared by the pruning tasks and `fairseq-compress prune`.

The global threshold is found without concatenating the scores (``torch.cat``
+ ``topk`` would hold a copy of every target weight, plus int64 indices: on
``roberta_l24_h1024`` that more than doubles peak memory). No library finds
the k-th smallest value over a list of tensors, so it is searched here by
bisection on float32 bit patterns, which order non-negative floats like the
floats themselves: 31 counting passes over the scores, a chunk at a time.
"""
from typing import List, Sequence

import torch

# Linear weights inside encoder/decoder layers: not embeddings, LayerNorms, biases or output projections.
DEFAULT_TARGETS = r"(^|\.)layers\.\d+\."
CHUNK = 1 << 22  # elements converted to float32 at a time while counting
FLOAT32_INF_BITS = 0x7F800000


def _magnitudes(weight: torch.Tensor) -> torch.Tensor:
    return weight.detach().float().abs()


def _count_at_most(weights: Sequence[torch.Tensor], bits: int) -> int:
    """How many |weights| have a float32 bit pattern <= `bits`."""
    counts = [(_magnitudes(flat[start:start + CHUNK]).view(torch.int32) <= bits).sum()
              for flat in (w.reshape(-1) for w in weights) for start in range(0, flat.numel(), CHUNK)]
    return int(sum(counts))  # one host-device sync per pass


def kth_smallest_magnitude(weights: Sequence[torch.Tensor], k: int) -> torch.Tensor:
    """The k-th smallest (1-based) of all |weights|, as a float32 scalar on the CPU."""
    low, high = 0, FLOAT32_INF_BITS  # the answer's bit pattern lies in [low, high]
    while low < high:
        middle = (low + high) // 2
        if _count_at_most(weights, middle) >= k:
            high = middle
        else:
            low = middle + 1
    return torch.tensor(low, dtype=torch.int32).view(torch.float32)


def keep_largest(weights: Sequence[torch.Tensor], sparsity: float) -> List[torch.Tensor]:
    """Bool masks (each on its weight's device) keeping the round((1 - sparsity) * n)
    largest |weights| of all of them, n their total size. Ties at the threshold are
    kept in order of the tensors and of their elements, so exactly that many are kept."""
    total = sum(w.numel() for w in weights)
    n_prune = total - round((1 - sparsity) * total)
    if n_prune == 0:
        return [torch.ones_like(w, dtype=torch.bool) for w in weights]
    threshold = kth_smallest_magnitude(weights, n_prune)
    keeps = [_magnitudes(w) > threshold.to(w.device) for w in weights]
    ties_to_keep = total - n_prune - sum(int(k.sum()) for k in keeps)
    for weight, keep in zip(weights, keeps):
        if ties_to_keep == 0:
            break
        ties = (_magnitudes(weight) == threshold.to(weight.device)).reshape(-1)
        chosen = ties & (ties.cumsum(0) <= ties_to_keep)
        keep.view(-1).logical_or_(chosen)
        ties_to_keep -= int(chosen.sum())
    return keeps


def magnitude_masks(weights: Sequence[torch.Tensor], sparsity: float, scope: str) -> List[torch.Tensor]:
    """Masks (True = kept) of `sparsity` over the magnitudes of `weights` (pruned
    ones already 0): one threshold over all of them (global) or one per tensor (layer)."""
    if scope == "layer":
        return [keep_largest([w], sparsity)[0] for w in weights]
    return keep_largest(weights, sparsity)
