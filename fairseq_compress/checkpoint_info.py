"""What a fairseq checkpoint was trained as (``fairseq-compress info``), read with the safe loader:
the stock task that the plugin's task extends, the arch and the data directory."""
import re
from typing import TypedDict

from .checkpoint_safety import load_state


class TrainedAs(TypedDict):
    task: str  # e.g. translation for translation_pruning / translation_timed
    arch: str
    data: str


def config_value(model_cfg, key):
    """`key` of a checkpoint's model config: a Namespace for archs registered with add_args, else a dict."""
    return model_cfg.get(key) if isinstance(model_cfg, dict) else getattr(model_cfg, key, None)


def stock_task(name: str) -> str:
    """The stock fairseq task that the plugin's task `name` extends (`name` itself for a stock task)."""
    return re.sub(r"_(pruning|timed)$", "", name)


def trained_as(path: str) -> TrainedAs:
    state = load_state(path)
    cfg = state.get("cfg") if isinstance(state, dict) else None
    if not cfg:
        raise ValueError(f"--path {path} holds no training config ('cfg'): not a checkpoint of fairseq-train")
    model = cfg["model"]
    arch = config_value(model, "arch") or config_value(model, "_name")
    return {"task": stock_task(cfg["task"]["_name"]), "arch": arch, "data": cfg["task"]["data"]}
