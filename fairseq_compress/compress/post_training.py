"""Post-training compression of a fairseq checkpoint into the compressed format:
one-shot magnitude pruning and/or scalar quantization (symmetric, one scale
per output row) of the weight matrices; every other tensor is stored in fp16.
Pruned matrices are stored sparsely (bitmask + nonzeros) when that is smaller.
It works on the stored state dict, so any arch, stock or plugin, is covered
without building the model; checkpoints of the pruning tasks are folded first."""
import re

from ..errors import ConfigError
from ..modules.scalar_quantizer import BITS
from ..modules.weight_parametrizations import fold_pruning_masks
from .checkpoint_format import encode_dense, encode_weight, load_dense_checkpoint, tie_key, with_aliases, write_checkpoint
from .magnitude_pruning import DEFAULT_TARGETS, magnitude_masks


def is_weight_matrix(name, tensor):
    return tensor.is_floating_point() and tensor.dim() >= 2 and name.endswith(".weight")


def prune_state(state, sparsity, scope, targets):
    """Zero the smallest weights of the target matrices, in place; return their names."""
    names = [name for name, tensor in state.items() if is_weight_matrix(name, tensor) and re.search(targets, name)]
    if not names:
        raise ConfigError(f"--targets {targets} matches no weight matrix of the checkpoint")
    for name, keep in zip(names, magnitude_masks([state[n] for n in names], sparsity, scope)):
        state[name] = state[name] * keep
    return names


def prune_and_quantize(path, out, bits=None, sparsity=0.0, scope="global", targets=DEFAULT_TARGETS, exclude=None):
    """Write `out`: the checkpoint at `path` pruned to `sparsity` and/or with its
    weight matrices (except names matching `exclude`) at `bits` bits."""
    if bits is not None and bits not in BITS:
        raise ConfigError(f"--bits {bits}: allowed values are {', '.join(map(str, BITS))}")
    if not 0 <= sparsity < 1:
        raise ConfigError(f"--sparsity must be in [0, 1), got {sparsity}")
    source = load_dense_checkpoint(path)
    state = fold_pruning_masks(source["model"])
    if sparsity:
        prune_state(state, sparsity, scope, targets)

    def entry(name, tensor):
        if is_weight_matrix(name, tensor) and not (exclude and re.search(exclude, name)):
            return lambda: encode_weight(tensor, bits)
        return lambda: encode_dense(tensor)

    write_checkpoint(with_aliases((name, tie_key(tensor) if tensor.numel() else None, entry(name, tensor))
                                  for name, tensor in state.items()), source, out)
