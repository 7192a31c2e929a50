"""The compressed checkpoint format (``fairseq_hooks`` makes stock fairseq's loader read it).

A compressed checkpoint is an ordinary fairseq checkpoint (``cfg``, ``model``,
no optimizer state) whose ``model`` entry maps each state-dict name either to
a tensor (stored in fp16 when it is floating point) or to an encoded entry:

- ``{"format": "ipq", "codes": uint8 [blocks], "centroids": fp16 [k, block], "shape": [...]}``:
  product quantization, one code per block of consecutive input features, in
  the block order of fairseq's ``PQ`` (``fairseq/modules/quantization/pq``);
- ``{"format": "int", "bits": b, "packed": uint8, "scale": fp32 [out], "shape": [...]}``:
  symmetric per-output-channel scalar quantization, b-bit values offset to
  unsigned and bit-packed (two per byte at 4 bits);
- ``{"format": "sparse", "mask": 1 bit per weight, "shape": [...], "values": fp16 nonzeros}``
  or, quantized, ``"bits"``, ``"packed"`` nonzero integers and ``"scale"`` per row:
  a pruned matrix, written whenever that is smaller than its dense form;
- ``{"format": "alias", "of": NAME}``: a tensor tied to NAME (shared
  embeddings and output projections are stored once).

``decode_checkpoint`` rebuilds the dense fp32 state dict that the model's own
``load_state_dict`` expects, so every arch loads a compressed file unchanged.
"""

from typing import Callable, Dict, Iterable, List, Literal, NotRequired, Optional, Sequence, Tuple, TypedDict, Union

import torch

from ..modules.scalar_quantizer import dequantize, scalar_quantize

FORMAT_KEY = "fairseq_compress_format"  # top-level checkpoint entry marking a compressed file
FORMAT_VERSION = 1
STORED_FLOAT = torch.float16


class IpqEntry(TypedDict):
    format: Literal["ipq"]
    codes: torch.Tensor  # uint8 [blocks]
    centroids: torch.Tensor  # fp16 [k, block]
    shape: List[int]


class IntEntry(TypedDict):
    format: Literal["int"]
    bits: int
    packed: torch.Tensor  # uint8, values offset to unsigned
    scale: torch.Tensor  # fp32 [out]
    shape: List[int]


class SparseEntry(TypedDict):
    format: Literal["sparse"]
    shape: List[int]
    mask: torch.Tensor  # 1 bit per weight
    values: NotRequired[torch.Tensor]  # fp16 nonzeros; or, quantized, the three below
    bits: NotRequired[int]
    packed: NotRequired[torch.Tensor]
    scale: NotRequired[torch.Tensor]


class AliasEntry(TypedDict):
    format: Literal["alias"]
    of: str  # the name of the tensor this one is tied to


Entry = Union[torch.Tensor, IpqEntry, IntEntry, SparseEntry, AliasEntry]
Shape = Sequence[int]


# Re-implements: fairseq 0.12.3.1 (fairseq-fixed) fairseq.modules.quantization.pq.pq.PQ.decode (the fully connected
# case). Held equal by tests/test_ipq.py::test_pq_layout_matches_fairseq.
def pq_decode(centroids: torch.Tensor, codes: torch.Tensor, shape: Shape) -> torch.Tensor:
    """The weight [out, in...] whose blocks are ``centroids[codes]`` (fairseq PQ layout)."""
    out_features, block = shape[0], centroids.size(1)
    weight = centroids[codes.long()].reshape(-1, out_features, block).permute(1, 0, 2).flatten(1, 2)
    return weight.reshape(shape)


def encode_ipq(centroids: torch.Tensor, codes: torch.Tensor, shape: Shape) -> IpqEntry:
    if centroids.size(0) > 256:
        raise ValueError(f"uint8 codes hold at most 256 centroids, got {centroids.size(0)}")
    return {"format": "ipq", "codes": codes.to(torch.uint8), "centroids": centroids.detach().to(STORED_FLOAT),
            "shape": list(shape)}


def pack_bits(values: torch.Tensor, bits: int) -> torch.Tensor:
    """uint8 bytes holding `values` (ints in [0, 2^bits)) with `bits` bits each, big-endian."""
    if bits == 8:
        return values.to(torch.uint8).flatten()
    shifts = torch.arange(bits - 1, -1, -1, dtype=torch.int16, device=values.device)
    stream = ((values.flatten().to(torch.int16)[:, None] >> shifts) & 1).flatten()
    stream = torch.nn.functional.pad(stream, (0, -len(stream) % 8))
    byte_shifts = torch.arange(7, -1, -1, dtype=torch.int16, device=values.device)
    return (stream.reshape(-1, 8) << byte_shifts).sum(1).to(torch.uint8)


def unpack_bits(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    if bits == 8:
        return packed[:count].to(torch.int16)
    byte_shifts = torch.arange(7, -1, -1, dtype=torch.int16, device=packed.device)
    stream = ((packed.to(torch.int16)[:, None] >> byte_shifts) & 1).flatten()
    shifts = torch.arange(bits - 1, -1, -1, dtype=torch.int16, device=packed.device)
    return (stream[: count * bits].reshape(count, bits) << shifts).sum(1)


def _offset(bits: int) -> int:
    """Added to the signed values in [-q, q] to store them unsigned."""
    return 2 ** (bits - 1) - 1


def encode_int(weight: torch.Tensor, bits: int) -> IntEntry:
    values, scale = scalar_quantize(weight, bits)
    return {"format": "int", "bits": bits, "packed": pack_bits(values + _offset(bits), bits), "scale": scale,
            "shape": list(weight.shape)}


def int_decode(packed: torch.Tensor, scale: torch.Tensor, bits: int, shape: Shape) -> torch.Tensor:
    values = unpack_bits(packed, bits, int(torch.Size(shape).numel())) - _offset(bits)
    return dequantize(values, scale, shape)


def encode_sparse(weight: torch.Tensor, bits: Optional[int] = None) -> SparseEntry:
    """Bitmask of the nonzeros, then the nonzeros alone: fp16, or `bits`-bit
    integers with the scales of the whole rows (zeros quantize to zero)."""
    weight = weight.detach()
    keep = weight != 0
    entry: SparseEntry = {"format": "sparse", "shape": list(weight.shape),
                          "mask": pack_bits(keep.flatten().to(torch.uint8), 1)}
    if bits is None:
        entry["values"] = weight[keep].to(STORED_FLOAT)
    else:
        values, scale = scalar_quantize(weight, bits)
        entry.update(bits=bits, scale=scale, packed=pack_bits(values[keep] + _offset(bits), bits))
    return entry


def sparse_decode(entry: SparseEntry) -> torch.Tensor:
    shape = entry["shape"]
    keep = unpack_bits(entry["mask"], 1, int(torch.Size(shape).numel())).bool()
    dense = torch.zeros(keep.shape, device=keep.device)
    if "bits" not in entry:
        dense[keep] = entry["values"].float()
        return dense.reshape(shape)
    dense[keep] = (unpack_bits(entry["packed"], entry["bits"], int(keep.sum())) - _offset(entry["bits"])).float()
    return dequantize(dense, entry["scale"].float(), shape)


def encode_weight(weight: torch.Tensor, bits: Optional[int] = None) -> Entry:
    """The smaller of the dense and the sparse form of a weight matrix, in fp16 or at `bits` bits."""
    value_bits = bits or 16
    nonzeros = int((weight != 0).sum())
    if weight.numel() + nonzeros * value_bits < weight.numel() * value_bits:
        return encode_sparse(weight, bits)
    return encode_int(weight, bits) if bits else encode_dense(weight)


def encode_dense(tensor: torch.Tensor) -> torch.Tensor:
    tensor = tensor.detach()
    return tensor.to(STORED_FLOAT) if tensor.is_floating_point() else tensor


def round_trip_dense(tensor: torch.Tensor) -> torch.Tensor:
    """The value ``encode_dense`` stores, as the in-memory model must use it."""
    return encode_dense(tensor).to(tensor.dtype)


def decode_entry(entry: Entry, decoded: Dict[str, torch.Tensor]) -> torch.Tensor:
    if torch.is_tensor(entry):
        return entry.float() if entry.is_floating_point() else entry
    if entry["format"] == "ipq":
        return pq_decode(entry["centroids"].float(), entry["codes"], entry["shape"])
    if entry["format"] == "sparse":
        return sparse_decode(entry)
    if entry["format"] == "int":
        return int_decode(entry["packed"], entry["scale"].float(), entry["bits"], entry["shape"])
    if entry["format"] == "alias":
        return decoded[entry["of"]]
    raise ValueError(f"unknown compressed tensor format {entry['format']!r}")


def tie_key(tensor: torch.Tensor) -> Tuple[int, int, Tuple[int, ...]]:
    """Equal for tensors that are one parameter shared under several names."""
    return tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape)


def with_aliases(named_entries: Iterable[Tuple[str, Optional[tuple], Callable[[], Entry]]]) -> Dict[str, Entry]:
    """{name: entry} from (name, tie identity, make_entry) triples: a name whose
    identity was seen before becomes an alias of the first one, encoded once."""
    entries, first_name = {}, {}
    for name, identity, make_entry in named_entries:
        if identity is not None and identity in first_name:
            entries[name] = {"format": "alias", "of": first_name[identity]}
        else:
            if identity is not None:
                first_name[identity] = name
            entries[name] = make_entry()
    return entries


def on_cpu(entries: Dict[str, Entry]) -> Dict[str, Entry]:
    """Entries as saved: a model fine-tuned on a GPU leaves its tensors there."""
    def move(value):
        return value.cpu() if torch.is_tensor(value) else value

    return {name: ({k: move(v) for k, v in entry.items()} if isinstance(entry, dict) else move(entry))
            for name, entry in entries.items()}


def write_checkpoint(model_state: Dict[str, Entry], source: dict, path: str, cfg: Optional[dict] = None,
                     compressed: bool = True) -> None:
    """Save `model_state` with the config (or `cfg`), counters and data position of `source`, the
    dense checkpoint it came from, without its optimizer state; marked as compressed unless not."""
    state = {"cfg": source["cfg"] if cfg is None else cfg, "args": source.get("args"), "model": on_cpu(model_state),
             "optimizer_history": source["optimizer_history"][-1:], "extra_state": source["extra_state"],
             "last_optimizer_state": None}
    if compressed:
        state[FORMAT_KEY] = FORMAT_VERSION
    from ..checkpoint_safety import durable_replace

    tmp = f"{path}.tmp"
    torch.save(state, tmp)
    durable_replace(tmp, path)  # a killed export never leaves a half-written OUT


def load_dense_checkpoint(path: str) -> dict:
    """A dense fairseq checkpoint as stored, refusing files that are not one."""
    from ..checkpoint_safety import load_state
    from ..errors import ConfigError

    state = load_state(path)
    if not isinstance(state, dict) or "model" not in state:
        raise ConfigError(f"--path {path} is not a fairseq checkpoint (no 'model' entry)")
    if state.get(FORMAT_KEY):
        raise ConfigError(f"--path {path} is already compressed; start from the dense checkpoint")
    return state


def decode_state_dict(model_state: Dict[str, Entry]) -> Dict[str, torch.Tensor]:
    decoded = {}
    # aliases point at earlier names, so decode in order
    for name, entry in model_state.items():
        decoded[name] = decode_entry(entry, decoded)
    return decoded


def decode_checkpoint(state: dict) -> dict:
    """Turn a loaded checkpoint, compressed or not, into the dense state dict that the
    model's own ``load_state_dict`` expects, in place."""
    if isinstance(state, dict) and state.get(FORMAT_KEY):
        state["model"] = decode_state_dict(state["model"])
    return state
