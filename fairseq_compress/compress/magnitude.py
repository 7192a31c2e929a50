"""Magnitude pruning masks, shared by the pruning tasks and `fairseq-compress prune`."""
import torch

# Linear weights inside encoder/decoder layers: not embeddings, LayerNorms, biases or output projections.
DEFAULT_TARGETS = r"(^|\.)layers\.\d+\."


def keep_largest(scores, sparsity):
    """A bool mask keeping the round((1 - sparsity) * n) largest of `scores`."""
    keep = torch.zeros(scores.numel(), dtype=torch.bool)
    keep[torch.topk(scores.flatten(), round((1 - sparsity) * scores.numel())).indices] = True
    return keep.reshape(scores.shape)


def magnitude_masks(scores, sparsity, scope):
    """Masks (True = kept) of `sparsity` over `scores` (|weight|, pruned ones 0):
    one threshold over all of them (global) or one per tensor (layer)."""
    if scope == "layer":
        return [keep_largest(s, sparsity) for s in scores]
    keep = keep_largest(torch.cat([s.flatten() for s in scores]), sparsity)
    return [k.reshape(s.shape) for k, s in zip(keep.split([s.numel() for s in scores]), scores)]
