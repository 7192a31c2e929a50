"""The training recipes, written once: the fairseq-hydra-train configs of fairseq_compress/config/
(mt_en_fr, cls_finetune, mlm_pretrain, electra_pretrain) as fairseq-train flags, for the one-stage
pipelines (train_mt.sh, finetune_cls.sh, pretrain_mlm.sh) and the studies that drive them.

    python fairseq_compress/recipes.py args RECIPE                # its fairseq-train flags, one word per line
    python fairseq_compress/recipes.py value RECIPE GROUP.FIELD   # one value (what a script derives from)

fairseq turns argv into its dataclass configs (fairseq.dataclass.utils.convert_namespace_to_omegaconf)
but has nothing for the way back, so this file does it by hand: each config field is the flag
fairseq's gen_parser_from_dataclass derives from its name. It imports only PyYAML, so that bash
runs it as a file without paying for fairseq's import.
"""
import sys
from pathlib import Path
from typing import Dict, List

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "config"
# A group's `_name` is chosen by these flags (fairseq's choice arguments); every other field is --its-name.
NAME_FLAGS = {"task": "--task", "model": "--arch", "criterion": "--criterion", "optimizer": "--optimizer",
              "lr_scheduler": "--lr-scheduler", "bpe": "--bpe", "tokenizer": "--tokenizer", "scoring": "--scoring"}
UNSET = "???"  # hydra's mandatory value: the caller's to give (task.data, checkpoint.save_dir)


def load(name: str) -> Dict[str, dict]:
    """The recipe `name` with its hydra defaults list merged in, in the list's order (`_self_`: its own
    values; last when not listed, as hydra does), as {group: {field: value}}."""
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        sys.exit(f"error: no recipe '{name}' in {CONFIG_DIR} (known: {', '.join(known)})")
    own = yaml.safe_load(path.read_text()) or {}
    layers = own.pop("defaults", [])
    merged: Dict[str, dict] = {}
    for layer in layers if "_self_" in layers else [*layers, "_self_"]:
        for group, fields in (own if layer == "_self_" else load(layer)).items():
            merged.setdefault(group, {}).update(fields or {})
    return merged


def flag_value(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def fairseq_train_args(name: str) -> List[str]:
    """The recipe's fields as fairseq-train flags: a true bool is a bare flag, a false or null one is
    left out (fairseq's default), a list is comma-joined (--lr 0.001,0.002), ??? is the caller's."""
    args: List[str] = []
    for group, fields in load(name).items():
        for field, value in fields.items():
            if value is None or value is False or value == UNSET:
                continue
            flag = NAME_FLAGS[group] if field == "_name" else "--" + field.replace("_", "-")
            args += [flag] if value is True else [flag, flag_value(value)]
    return args


def main(argv: List[str]) -> None:
    if len(argv) == 2 and argv[0] == "args":
        print("\n".join(fairseq_train_args(argv[1])))
    elif len(argv) == 3 and argv[0] == "value":
        group, _, field = argv[2].partition(".")
        value = load(argv[1]).get(group, {}).get(field)
        if value is None:
            sys.exit(f"error: recipe '{argv[1]}' sets no {argv[2]}")
        print(flag_value(value))
    else:
        sys.exit("usage: recipes.py args RECIPE | recipes.py value RECIPE GROUP.FIELD")


if __name__ == "__main__":
    main(sys.argv[1:])
