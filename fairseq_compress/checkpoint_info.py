"""What a fairseq checkpoint was trained as (``fairseq-compress info``), read with the safe loader:
the stock task that the plugin's task extends, the arch and the data directory."""
import re
from typing import TypedDict

from .checkpoint_safety import load_state


class TrainedAs(TypedDict):
    task: str  # e.g. translation for translation_pruning / translation_timed
    arch: str
    data: str


def trained_as(path: str) -> TrainedAs:
    state = load_state(path)
    cfg = state.get("cfg") if isinstance(state, dict) else None
    if not cfg:
        raise ValueError(f"--path {path} holds no training config ('cfg'): not a checkpoint of fairseq-train")
    model = cfg["model"]  # a Namespace for archs registered with add_args, else a dict
    arch = getattr(model, "arch", None) or model.get("arch") or model.get("_name")
    return {"task": re.sub(r"_(pruning|timed)$", "", cfg["task"]["_name"]), "arch": arch, "data": cfg["task"]["data"]}
