"""Post-training scalar quantization of a fairseq checkpoint into the compressed
format: every weight matrix (Linear, Embedding, conv; 2 or more dimensions)
becomes `bits`-bit integers with one fp32 scale per output row, everything
else is stored in fp16. It works on the stored state dict, so any arch,
stock or plugin, is quantized without building the model."""
import re

from ..errors import ConfigError
from .checkpoint_format import encode_dense, encode_int, load_dense_checkpoint, tie_key, with_aliases, write_compressed

ALLOWED_BITS = (2, 3, 4, 5, 6, 7, 8)


def is_quantized_weight(name, tensor, exclude):
    return tensor.is_floating_point() and tensor.dim() >= 2 and not (exclude and re.search(exclude, name))


def quantize_checkpoint(path, bits, out, exclude=None):
    """Write `out`: the checkpoint at `path` with its weight matrices at `bits` bits."""
    if bits not in ALLOWED_BITS:
        raise ConfigError(f"--bits {bits}: allowed values are {', '.join(map(str, ALLOWED_BITS))}")
    source = load_dense_checkpoint(path)

    def entry(name, tensor):
        if is_quantized_weight(name, tensor, exclude):
            return lambda: encode_int(tensor, bits)
        return lambda: encode_dense(tensor)

    model_state = source["model"]
    entries = with_aliases(
        (name, tie_key(tensor) if tensor.numel() else None, entry(name, tensor)) for name, tensor in model_state.items()
    )
    write_compressed(entries, source, out)
