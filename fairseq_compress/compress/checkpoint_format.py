"""The compressed checkpoint format, and the loader that makes stock fairseq read it.

A compressed checkpoint is an ordinary fairseq checkpoint (``cfg``, ``model``,
no optimizer state) whose ``model`` entry maps each state-dict name either to
a tensor (stored in fp16 when it is floating point) or to an encoded entry:

- ``{"format": "ipq", "codes": uint8 [blocks], "centroids": fp16 [k, block], "shape": [...]}``:
  product quantization, one code per block of consecutive input features, in
  the block order of fairseq's ``PQ`` (``fairseq/modules/quantization/pq``);
- ``{"format": "alias", "of": NAME}``: a tensor tied to NAME (shared
  embeddings and output projections are stored once).

``decode_checkpoint`` rebuilds the dense fp32 state dict that the model's own
``load_state_dict`` expects, so every arch loads a compressed file unchanged.
"""
import functools

import torch

FORMAT_KEY = "fairseq_compress_format"  # top-level checkpoint entry marking a compressed file
FORMAT_VERSION = 1
STORED_FLOAT = torch.float16


def pq_decode(centroids, codes, shape):
    """The weight [out, in...] whose blocks are ``centroids[codes]`` (fairseq PQ layout)."""
    out_features, block = shape[0], centroids.size(1)
    weight = centroids[codes.long()].reshape(-1, out_features, block).permute(1, 0, 2).flatten(1, 2)
    return weight.reshape(shape)


def encode_ipq(centroids, codes, shape):
    if centroids.size(0) > 256:
        raise ValueError(f"uint8 codes hold at most 256 centroids, got {centroids.size(0)}")
    return {"format": "ipq", "codes": codes.to(torch.uint8), "centroids": centroids.detach().to(STORED_FLOAT),
            "shape": list(shape)}


def encode_dense(tensor):
    tensor = tensor.detach()
    return tensor.to(STORED_FLOAT) if tensor.is_floating_point() else tensor


def round_trip_dense(tensor):
    """The value ``encode_dense`` stores, as the in-memory model must use it."""
    return encode_dense(tensor).to(tensor.dtype)


def decode_entry(entry, decoded):
    if torch.is_tensor(entry):
        return entry.float() if entry.is_floating_point() else entry
    if entry["format"] == "ipq":
        return pq_decode(entry["centroids"].float(), entry["codes"], entry["shape"])
    if entry["format"] == "alias":
        return decoded[entry["of"]]
    raise ValueError(f"unknown compressed tensor format {entry['format']!r}")


def decode_state_dict(model_state):
    decoded = {}
    # aliases point at earlier names, so decode in order
    for name, entry in model_state.items():
        decoded[name] = decode_entry(entry, decoded)
    return decoded


def decode_checkpoint(state):
    """Turn a loaded compressed checkpoint into a dense one, in place."""
    if isinstance(state, dict) and state.get(FORMAT_KEY):
        state["model"] = decode_state_dict(state["model"])
    return state


def install():
    """fairseq's checkpoint loader (generate, validate, train --restore-file) reads compressed files."""
    from fairseq import checkpoint_utils

    load = checkpoint_utils.load_checkpoint_to_cpu
    if getattr(load, "decodes_compressed", False):
        return

    @functools.wraps(load)
    def load_and_decode(path, *args, **kwargs):
        return decode_checkpoint(load(path, *args, **kwargs))

    load_and_decode.decodes_compressed = True
    checkpoint_utils.load_checkpoint_to_cpu = load_and_decode
