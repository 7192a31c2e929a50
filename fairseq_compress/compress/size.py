"""Where the bytes of a fairseq checkpoint go: embeddings, attention, FFN, other."""
import math
import os

import torch

from ..checkpoint_safety import load_state
from .checkpoint_format import tie_key

COMPONENTS = ("embeddings", "attention", "ffn", "other")
# State-dict name parts that place a tensor in a component; output projections
# are vocabulary x width matrices, so they count as embeddings.
_PARTS = {
    "embeddings": {"embed_tokens", "embed_positions", "output_projection"},
    "attention": {"self_attn", "encoder_attn"},
    "ffn": {"fc1", "fc2"},
}


def component_of(name):
    parts = name.split(".")
    if parts[-2:] == ["lm_head", "weight"]:  # RoBERTa's (usually tied) output embedding
        return "embeddings"
    for component, markers in _PARTS.items():
        if markers.intersection(parts):
            return component
    return "other"


def _stored_entries(model_state):
    """(name, parameters, bytes) of each tensor as stored: tied tensors (shared
    storage, or a compressed file's aliases) count once; compressed entries
    count the bytes of their codes and centroids."""
    seen = set()
    for name, entry in model_state.items():
        if isinstance(entry, dict):
            if entry.get("format") != "alias":
                yield name, math.prod(entry["shape"]), sum(_tensor_bytes(t) for t in _nested_tensors(entry))
            continue
        key = tie_key(entry)
        if key not in seen:
            seen.add(key)
            yield name, entry.numel(), _tensor_bytes(entry)


def _tensor_bytes(tensor):
    return tensor.numel() * tensor.element_size()


def _nested_tensors(obj):
    if torch.is_tensor(obj):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _nested_tensors(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _nested_tensors(value)


def checkpoint_size(path):
    """Bytes of the file and of its model tensors by component."""
    state = load_state(path)
    if not isinstance(state, dict) or "model" not in state:
        raise ValueError(f"{path} is not a fairseq checkpoint (no 'model' entry)")
    by_component = {c: {"params": 0, "bytes": 0} for c in COMPONENTS}
    for name, params, size in _stored_entries(state["model"]):
        entry = by_component[component_of(name)]
        entry["params"] += params
        entry["bytes"] += size
    model_bytes = sum(entry["bytes"] for entry in by_component.values())
    optimizer_bytes = sum(
        _tensor_bytes(t) for t in _nested_tensors(state.get("last_optimizer_state"))
    )
    file_bytes = os.path.getsize(path)
    return {
        "path": str(path),
        "file_bytes": file_bytes,
        "components": by_component,
        "model_params": sum(entry["params"] for entry in by_component.values()),
        "model_bytes": model_bytes,
        "optimizer_bytes": optimizer_bytes,
        "other_bytes": file_bytes - model_bytes - optimizer_bytes,
    }


def deployed_bytes(path) -> int:
    """What a model takes on disk where it is served: a checkpoint's model tensors as stored (a
    trained checkpoint's optimizer state is not deployed), or every file of a model directory
    (fairseq-compress export)."""
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(path, name)) for name in os.listdir(path)
                   if os.path.isfile(os.path.join(path, name)))
    return checkpoint_size(path)["model_bytes"]


def format_size_report(report):
    mb = 1e6
    rows = [f"{'component':<22}{'params':>14}{'bytes':>16}{'MB':>10}"]
    for component, entry in report["components"].items():
        rows.append(
            f"{component:<22}{entry['params']:>14,}{entry['bytes']:>16,}{entry['bytes'] / mb:>10.2f}"
        )
    rows.append(
        f"{'model total':<22}{report['model_params']:>14,}{report['model_bytes']:>16,}"
        f"{report['model_bytes'] / mb:>10.2f}"
    )
    rows.append(f"{'optimizer state':<22}{'':>14}{report['optimizer_bytes']:>16,}{report['optimizer_bytes'] / mb:>10.2f}")
    rows.append(f"{'config, counters, zip':<22}{'':>14}{report['other_bytes']:>16,}{report['other_bytes'] / mb:>10.2f}")
    rows.append(f"{'file on disk':<22}{'':>14}{report['file_bytes']:>16,}{report['file_bytes'] / mb:>10.2f}")
    return f"{report['path']} (MB = 10^6 bytes)\n" + "\n".join(rows)
