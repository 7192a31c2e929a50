"""A study's recipe: its YAML config (``configs/``) and ``key=value`` overrides merged onto the study's
dataclass schema (an unknown key or a wrong type is one line before any work), and what every
translation study shares: its overrides of the translation recipe and the checks of its data and CSV."""
import argparse
import os
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Type

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

CONFIGS = Path(__file__).parent / "configs"
RESTORE = ["--reset-optimizer", "--reset-dataloader", "--reset-meters", "--reset-lr-scheduler"]  # fine-tune from a checkpoint


@dataclass
class Recipe:
    """A study's overrides of the translation recipe (fairseq_compress/config/mt_en_fr.yaml, which
    scripts/train_mt.sh trains with) for its trainings from scratch; unset: the recipe's value."""
    lr: Optional[float] = None
    warmup: Optional[int] = None
    max_tokens: Optional[int] = None


@dataclass
class TranslationStudyConfig:
    """What every translation study's config holds: its data-bin, its work folder, its CSV, the runs at
    a time (one core each), the seeds, and its overrides of the translation recipe."""
    data: str = MISSING
    out: str = MISSING
    csv: str = MISSING
    jobs: int = MISSING
    seeds: List[int] = MISSING
    recipe: Recipe = field(default_factory=Recipe)


def recipe_flags(recipe: Recipe) -> List[str]:
    """train_mt.sh's flags of the overrides the study sets."""
    values = {"--lr": recipe.lr, "--warmup": recipe.warmup, "--max-tokens": recipe.max_tokens}
    return [word for flag, value in values.items() if value is not None for word in (flag, str(value))]


def read_recipe(path: Path) -> DictConfig:
    """A config file, laid over the one its `extends` names (beside it): a smoke config states only what it
    changes, so that every recipe value is written once. A value it gives as ??? must come from the command line
    (OmegaConf's merge would keep the base's)."""
    recipe = OmegaConf.load(path)
    base = recipe.pop("extends", None)
    if base is None:
        return recipe
    if not (path.parent / base).is_file():
        sys.exit(f"error: {path}: extends: no such file beside it: {base}")
    merged = OmegaConf.merge(read_recipe(path.parent / base), recipe)
    for key in missing_keys(recipe):
        OmegaConf.update(merged, key, MISSING)
    return merged


def missing_keys(node: DictConfig, prefix: str = "") -> List[str]:
    """The dotted keys whose value is ??? under `node`."""
    keys = []
    for key in node:
        if OmegaConf.is_missing(node, key):
            keys.append(f"{prefix}{key}")
        elif isinstance(node[key], DictConfig):
            keys += missing_keys(node[key], f"{prefix}{key}.")
    return keys


def load_config(schema: Type, name: str, description: str, argv: Optional[List[str]], example: str,
                check_first: Optional[Callable] = None):
    """The study's config: CONFIGS/NAME.yaml (or --config FILE) and the command line's overrides on `schema`;
    `check_first(config)` runs before a missing value is reported (a key of a block the config should not have)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=CONFIGS / f"{name}.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help=f"e.g. {example}")
    args = parser.parse_args(argv)
    if not args.config.is_file():
        sys.exit(f"error: --config {args.config}: no such file")
    try:
        config = OmegaConf.merge(OmegaConf.structured(schema), read_recipe(args.config),
                                 OmegaConf.from_dotlist(args.overrides))
        if check_first is not None:
            check_first(config)
        OmegaConf.to_container(config, throw_on_missing=True)
    except OmegaConfBaseException as error:
        key = getattr(error, "full_key", None)
        sys.exit(f"error: {args.config}: {f'{key}: ' if key else ''}{str(error).splitlines()[0]}")
    return config


def load_task_config(schema: Type, study: str, tasks: Sequence[str], description: str, argv: Optional[List[str]],
                     example: str, check_first: Optional[Callable] = None):
    """The config of a study with tasks: CONFIGS/<study>_<task>.yaml, where task=T on the command line picks T
    (the first of `tasks` by default), or --config FILE with the task FILE states: overriding that would run
    one task with the other's paths and budgets."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=Path)
    given, overrides = pre.parse_known_args(argv)
    task = next((a.split("=", 1)[1] for a in reversed(overrides) if a.startswith("task=")), None)
    if task is not None and task not in tasks:
        sys.exit(f"error: task must be {' or '.join(tasks)}, got '{task}'")
    config = load_config(schema, f"{study}_{task or tasks[0]}", description, argv, example, check_first)
    if config.task not in tasks:
        sys.exit(f"error: {given.config}: task must be {' or '.join(tasks)}, got '{config.task}'")
    file_task = read_recipe(given.config).get("task") if given.config else task
    if task is not None and task != file_task:
        sys.exit(f"error: task={task}: {given.config} is the {file_task} study's config; drop task= or give "
                 f"the {task} one")
    return config


def check_csv(key: str, path: str) -> None:
    """The config's `key` names a .csv file in an existing directory, else one line."""
    if not Path(path).parent.is_dir() or not path.endswith(".csv"):
        sys.exit(f"error: {key}={path} must be a .csv file in an existing directory")


def is_translation_data(data: str) -> bool:
    """Whether DATA is a data-bin of scripts/prepare_mt.sh: its sentencepiece model and a binarized train split."""
    return (Path(data) / "spm.model").is_file() and bool(list(Path(data).glob("train.*-*.*.bin")))


def check_translation_data(data: str) -> None:
    if not is_translation_data(data):
        sys.exit(f"error: data={data} is not a data-bin of scripts/prepare_mt.sh (spm.model and a train split)")


def check_translation_study(data: str, csv: str) -> None:
    """DATA is a prepared translation data-bin and CSV a .csv in an existing directory, else one line."""
    check_translation_data(data)
    check_csv("csv", csv)


@dataclass
class IPQ:
    """A study's fairseq-compress ipq: its stages (fairseq_compress/config/ipq/CONFIG.yaml), the fine-tuning
    updates after each stage and the k-means iterations."""
    config: str = MISSING
    finetune_updates: int = MISSING
    n_iter: int = MISSING


def ipq_stages(ipq: IPQ) -> Path:
    """The stage yaml that ipq.config names, else one line."""
    stages = Path(__file__).parents[1] / "config/ipq" / f"{ipq.config}.yaml"
    if not stages.is_file():
        sys.exit(f"error: ipq.config={ipq.config}: no fairseq_compress/config/ipq/{ipq.config}.yaml")
    return stages


def ipq_command(ipq: IPQ, checkpoint: Path, out: Path, data: Path) -> List:
    """fairseq-compress ipq of `checkpoint` into `out`, fine-tuned on `data` between stages."""
    return ["fairseq-compress", "ipq", "--path", checkpoint, "--out", out, "--data", data, "--config", ipq_stages(ipq),
            "--finetune-updates", ipq.finetune_updates, "--n-iter", ipq.n_iter, "--force"]


def check_cls_task(cls: str) -> None:
    """CLS is a classification task of scripts/prepare_glue.sh, else one line."""
    if not (Path(cls) / "input0/train.bin").is_file() or not (Path(cls) / "label/dict.txt").is_file():
        sys.exit(f"error: cls={cls} is not a task of scripts/prepare_glue.sh (input0/, label/)")


def study_paths(config) -> Tuple[Path, Path]:
    """(data, out) of a checked config, resolved, out created; every step runs on one core from here
    on (trainings side by side, speed races on one thread)."""
    os.environ["OMP_NUM_THREADS"] = "1"
    data, out = Path(config.data).resolve(), Path(config.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    return data, out


def mean_and_spread(values: Sequence[float]) -> str:
    """'mean +- std' over seeds (the mean alone for one seed), as the docs' tables print it."""
    spread = f" +- {statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.2f}{spread}"
