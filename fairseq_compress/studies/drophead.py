"""Scheduled DropHead where regularization matters (docs/drophead.md): does DropHead help on top of the
tuned dropout, where the baseline overfits? On translation (``task: mt``) or sentence classification
(``task: cls``), on a training subset small enough to overfit within the updates given.

Stages, in order; each one's result file is its stamp, so a rerun reuses what is done:
  1. the data. mt: the first ``mt.train_pairs`` pairs of RAW/en_fr, every k-th pair of its valid split
     (about ``mt.valid_pairs``: validating often on all of it would cost more than training) and its full
     test split into WORK=OUT/pairs<N>_valid<M>/raw, prepared with a sentencepiece model of their own
     (scripts/prepare_mt.sh) into WORK/bin. cls: RAW/en prepared for masked-LM pretraining
     (scripts/prepare_mlm.sh, into ``cls.mlm_data``), the first ``cls.train_examples`` sentences of RAW/cls
     (its full dev and test splits) into WORK=OUT/examples<N>/raw, prepared with that dictionary
     (scripts/prepare_glue.sh) into WORK/bin;
  2. cls only: a masked LM pretrained for ``cls.pretrain.minutes`` into OUT/pretrain
     (scripts/pretrain_mlm.sh, no DropHead), unless ``cls.pretrained`` names one;
  3. the baselines: one run per dropout of ``dropouts`` and seed, ``jobs`` at a time, into
     WORK/dropout<D>/seed<S>. mt: scripts/train_mt.sh, validating every ``mt.validate_every`` updates;
     valid.json (the best valid loss, its update, how far the last valid loss rose above it) and
     bleu.json (test BLEU of checkpoint_best.pt, the one of lowest valid loss: scripts/eval_bleu.sh).
     cls: scripts/finetune_cls.sh from the pretrained encoder; accuracy.json (test and dev accuracy of
     the checkpoint best on dev);
  4. the tuned baseline: the dropout of lowest mean best valid loss (mt) / highest mean dev accuracy (cls);
  5. DropHead at each rate of ``drophead_p`` (``drophead_schedule``, V by default) on top of it, every
     seed: WORK/dropout<D>_<schedule>_p<P>/seed<S>;
  6. the CSV (a row per run; mt: test BLEU, best valid loss, its update and the rise after it; cls: test
     and dev accuracy), mt: the valid-loss curves beside it (<csv stem>_valid_loss.csv and .png, the mean
     over seeds per config against updates), and the table of the docs.

    .venv/bin/python -m fairseq_compress.studies.drophead [--config FILE] [task=mt|cls] [key=value ...]

Recipes and budgets: configs/drophead_mt.yaml and configs/drophead_cls.yaml (``task=cls`` picks the second;
configs/drophead_{mt,cls}_smoke.yaml: the suite's toy runs).
"""
import gzip
import json
import os
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from fairseq.models import ARCH_MODEL_REGISTRY, FairseqEncoderDecoderModel
from omegaconf import MISSING

from .fairseq_log import records
from .stages import ROOT, finetune_cls, in_parallel, number, run, run_once, write_csv
from .study_config import Recipe, check_csv, load_task_config, mean_and_spread, recipe_flags
from ..plotting import pyplot

TASKS = ("mt", "cls")
SCHEDULES = ("v", "constant")  # --drophead-schedule's choices


@dataclass
class MT:
    arch: str = MISSING
    train_pairs: int = MISSING  # few enough that the baseline overfits within max_update
    valid_pairs: int = MISSING  # about: every k-th pair of the valid split
    vocab_size: int = MISSING
    max_update: int = MISSING
    validate_every: int = MISSING
    recipe: Recipe = field(default_factory=Recipe)  # over the translation recipe's; unset: its values


@dataclass
class Pretrain:
    minutes: float = MISSING  # training time (0: none, then max_update)
    max_update: int = MISSING  # 0: none, the budget is minutes
    max_tokens: int = MISSING  # CPU scale: small batches and a short warmup get the most out of minutes
    warmup: int = MISSING


@dataclass
class CLS:
    arch: str = MISSING
    mlm_data: str = MISSING  # where prepare_mlm.sh writes RAW/en, prepared (shared with other studies)
    vocab_size: int = MISSING
    pretrained: str = MISSING  # a masked-LM checkpoint to fine-tune instead of pretraining one
    pretrain: Pretrain = field(default_factory=Pretrain)
    train_examples: int = MISSING
    max_update: int = MISSING
    lr: float = MISSING
    batch_size: int = MISSING


@dataclass
class StudyConfig:
    task: str = MISSING
    raw: str = MISSING
    out: str = MISSING
    csv: str = MISSING
    jobs: int = MISSING
    seeds: List[int] = MISSING
    dropouts: List[float] = MISSING
    drophead_p: List[float] = MISSING
    drophead_schedule: str = MISSING
    mt: Optional[MT] = None  # the block of `task`, given by its config
    cls: Optional[CLS] = None


# task: (the metric that picks the tuned dropout, its file, min or max; the CSV's metrics, their files)
METRICS = {
    "mt": (("best_valid_loss", "valid.json", min),
           (["bleu", "best_valid_loss", "best_update", "valid_loss_rise"], ["bleu.json", "valid.json"])),
    "cls": (("dev_accuracy", "accuracy.json", max), (["accuracy", "dev_accuracy"], ["accuracy.json"])),
}
INPUTS = {"mt": {"en_fr": [f"{split}.{lang}" for split in ("train", "valid", "test") for lang in ("en", "fr")]},
          "cls": {"en": ["train.txt", "valid.txt"], "cls": ["train.tsv", "dev.tsv", "test.tsv"]}}


def input_file(directory: Path, name: str) -> Optional[Path]:
    """DIRECTORY/NAME or NAME.gz, whichever exists (as the bash pipelines take their inputs)."""
    return next((p for p in (directory / name, directory / f"{name}.gz") if p.is_file()), None)


def check_config(config: StudyConfig) -> None:
    """Bad values stop the study before any work, with one line."""
    task = config[config.task]
    if task is None:
        sys.exit(f"error: task={config.task}: the config has no {config.task} block (configs/drophead_{config.task}.yaml)")
    for directory, names in INPUTS[config.task].items():
        for name in names:
            if input_file(Path(config.raw) / directory, name) is None:
                sys.exit(f"error: raw={config.raw}: missing {directory}/{name} (or {name}.gz); the shipped corpus is "
                         f"data-bin/raw")
    check_csv("csv", config.csv)
    if not config.seeds or config.jobs < 1:
        sys.exit("error: seeds must not be empty and jobs must be >= 1")
    for dropout in config.dropouts:
        if not 0 <= dropout < 1:
            sys.exit(f"error: dropouts: each must be in [0, 1), got {number(dropout)}")
    if not config.dropouts:
        sys.exit("error: dropouts must not be empty (the baselines DropHead goes on top of)")
    for p in config.drophead_p:
        if not 0 < p < 1:
            sys.exit(f"error: drophead_p: each must be in (0, 1), got {number(p)}")
    if config.drophead_schedule not in SCHEDULES:
        sys.exit(f"error: drophead_schedule must be one of {', '.join(SCHEDULES)}, got '{config.drophead_schedule}'")
    sizes = ("train_pairs", "valid_pairs", "max_update", "validate_every") if config.task == "mt" else \
        ("train_examples", "max_update", "batch_size")
    for key in sizes:
        if task[key] < 1:
            sys.exit(f"error: {config.task}.{key} must be a positive integer, got {task[key]}")
    family = "transformer_l*_h*" if config.task == "mt" else "roberta_l*_h*"
    model = ARCH_MODEL_REGISTRY.get(task.arch)
    if model is None or issubclass(model, FairseqEncoderDecoderModel) != (config.task == "mt"):
        sys.exit(f"error: {config.task}.arch {task.arch} is not a registered {config.task} architecture "
                 f"(plugin archs: {family})")
    if config.task == "cls":
        if task.pretrained and not Path(task.pretrained).is_file():
            sys.exit(f"error: cls.pretrained: no such checkpoint: {task.pretrained}")
        if not task.pretrained and task.pretrain.minutes <= 0 and task.pretrain.max_update < 1:
            sys.exit("error: cls.pretrain needs minutes > 0 or max_update >= 1 (or give cls.pretrained)")


def read_lines(path: Path) -> List[bytes]:
    """The lines of a plain or .gz file, each with its newline, split at newlines only (as awk reads them)."""
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return [line + b"\n" for line in lines]


def write_subset(raw: Path, files: Dict[str, List[bytes]]) -> None:
    """WORK/raw holding `files` ({name: lines}), built beside it and moved into place; kept once there."""
    if raw.is_dir():
        return
    tmp = raw.with_name(raw.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    for name, lines in files.items():
        (tmp / name).write_bytes(b"".join(lines))
    tmp.rename(raw)


def prepare_mt(config: StudyConfig, raw: Path, out: Path) -> Tuple[Path, Path]:
    """(WORK, DATA) of the translation subset: the first train_pairs, every k-th valid pair, the full test split."""
    mt = config.mt
    work = out / f"pairs{mt.train_pairs}_valid{mt.valid_pairs}"
    source = raw / "en_fr"
    if not (work / "raw").is_dir():
        valid_lines = len(read_lines(input_file(source, "valid.en")))
        k = -(-valid_lines // mt.valid_pairs)  # ceil: about valid_pairs of them, spread over the split
        files = {}
        for lang in ("en", "fr"):
            files[f"train.{lang}"] = read_lines(input_file(source, f"train.{lang}"))[:mt.train_pairs]
            files[f"valid.{lang}"] = read_lines(input_file(source, f"valid.{lang}"))[::k]
            files[f"test.{lang}"] = read_lines(input_file(source, f"test.{lang}"))
        write_subset(work / "raw", files)
    run(["bash", ROOT / "scripts/prepare_mt.sh", work / "raw", work / "bin", "--vocab-size", mt.vocab_size])
    return work, work / "bin"


def prepare_cls(config: StudyConfig, raw: Path, out: Path) -> Tuple[Path, Path, Path]:
    """(WORK, DATA, the pretrained checkpoint): the first train_examples sentences (the shipped train.tsv is
    shuffled), with the header line, the full dev and test splits; the masked LM, pretrained unless given."""
    cls = config.cls
    mlm_data = Path(cls.mlm_data).resolve()
    run(["bash", ROOT / "scripts/prepare_mlm.sh", raw / "en", mlm_data, "--vocab-size", cls.vocab_size])
    work = out / f"examples{cls.train_examples}"
    if not (work / "raw").is_dir():
        source = raw / "cls"
        files = {"train.tsv": read_lines(input_file(source, "train.tsv"))[:cls.train_examples + 1]}
        files.update({f"{split}.tsv": read_lines(input_file(source, f"{split}.tsv")) for split in ("dev", "test")})
        write_subset(work / "raw", files)
    run(["bash", ROOT / "scripts/prepare_glue.sh", work / "raw", work / "bin", mlm_data])
    if cls.pretrained:
        return work, work / "bin", Path(cls.pretrained).resolve()
    pretrain = cls.pretrain
    budget = ["--minutes", number(pretrain.minutes)] if pretrain.minutes > 0 else []
    run(["bash", ROOT / "scripts/pretrain_mlm.sh", mlm_data, out / "pretrain", "--arch", cls.arch, *budget,
         "--max-update", pretrain.max_update, "--max-tokens", pretrain.max_tokens, "--warmup", pretrain.warmup])
    return work, work / "bin", out / "pretrain" / "checkpoint_last.pt"


def valid_points(log_path: Path) -> List[Tuple[int, float]]:
    """[(num_updates, valid loss)] of a train.log, one per validation (the last one of an update wins)."""
    points = {int(r["num_updates"]): r["loss"] for r in records(Path(log_path).read_text(encoding="utf-8"), "valid")}
    if not points:
        sys.exit(f"error: {log_path} has no 'valid' record of --log-format json")
    return sorted(points.items())


def run_summary(points: List[Tuple[int, float]]) -> dict:
    """The best valid loss, the update it came at and how far the last valid loss rose above it (overfitting)."""
    update, loss = min(points, key=lambda p: p[1])
    return {"best_valid_loss": loss, "best_update": update, "valid_loss_rise": round(points[-1][1] - loss, 3)}


def valid_once(save: Path) -> dict:
    """run_summary of save/train.log, written once into save/valid.json (a killed step leaves none)."""
    out = save / "valid.json"
    if not out.exists():
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(run_summary(valid_points(save / "train.log"))) + "\n")
        tmp.replace(out)
    return json.loads(out.read_text())


def train_and_score(config: StudyConfig, data: Path, save: Path, seed: int, flags: tuple) -> None:
    """One translation run into `save` (train_mt.sh reuses a finished one), then valid.json and bleu.json."""
    mt = config.mt
    run(["bash", ROOT / "scripts/train_mt.sh", data, save, "--arch", mt.arch, "--max-update", mt.max_update,
         "--seed", seed, *recipe_flags(mt.recipe), "--", "--validate-interval-updates", mt.validate_every,
         "--save-interval-updates", mt.validate_every, *flags])
    valid_once(save)
    run_once(save / "bleu.json", ["bash", ROOT / "scripts/eval_bleu.sh", save / "checkpoint_best.pt", data, "--json"])
    print(f"[drophead] {save}: {(save / 'valid.json').read_text().strip()} {(save / 'bleu.json').read_text().strip()}",
          file=sys.stderr)


def finetune(config: StudyConfig, data: Path, pretrained: Path, save: Path, seed: int, flags: tuple) -> None:
    """One fine-tuning into `save` with the study's cls recipe and a config's DropHead flags."""
    cls = config.cls
    finetune_cls(data, save, cls.arch, cls.max_update, seed, pretrained,
                 ["--lr", number(cls.lr), "--batch-size", cls.batch_size], flags)


def group_rows(groups: Dict[str, Path], seeds: List[int], metrics: List[str], files: List[str]) -> List[dict]:
    """A row per run: config, seed and the metrics read from its files."""
    rows = []
    for name, directory in groups.items():
        for seed in seeds:
            values = {}
            for metric_file in files:
                values.update(json.loads((directory / f"seed{seed}" / metric_file).read_text()))
            rows.append({"config": name, "seed": seed, **{m: values[m] for m in metrics}})
    return rows


def valid_curves(groups: Dict[str, Path], seeds: List[int], csv_path: Path, png: Path) -> None:
    """Every (config, seed, num_updates, valid_loss) as a CSV; the mean valid loss per config against updates."""
    curves = {name: {f"seed{seed}": valid_points(directory / f"seed{seed}" / "train.log") for seed in seeds}
              for name, directory in groups.items()}
    write_csv(csv_path, [{"config": name, "seed": seed, "num_updates": update, "valid_loss": loss}
                         for name, runs in curves.items() for seed, points in runs.items() for update, loss in points])
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, runs in curves.items():
        updates = sorted(set.intersection(*(set(u for u, _ in points) for points in runs.values())))
        by_seed = [dict(points) for points in runs.values()]
        ax.plot(updates, [statistics.mean(points[u] for points in by_seed) for u in updates],
                label=f"{name} ({len(runs)} seeds)")
    ax.set(xlabel="updates", ylabel="valid loss (label-smoothed, base 2)", title="Validation loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def summary(rows: List[dict], metrics: List[str]) -> str:
    """The docs' table: per config, each metric's mean +- std over seeds and the first one per seed."""
    lines = ["| config | seeds | " + " | ".join(f"{m} mean +- std" for m in metrics) + f" | {metrics[0]} per seed |",
             "|---|---:|" + "---:|" * len(metrics) + "---|"]
    for name in dict.fromkeys(row["config"] for row in rows):
        mine = [row for row in rows if row["config"] == name]
        lines.append(f"| {name} | {len(mine)} | " + " | ".join(mean_and_spread([r[m] for r in mine]) for m in metrics)
                     + " | " + ", ".join(f"{r[metrics[0]]:.2f}" for r in mine) + " |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    config = load_task_config(StudyConfig, "drophead", list(TASKS), __doc__, argv, "task=cls seeds=[1] dropouts=[0.3]")
    check_config(config)
    os.environ["OMP_NUM_THREADS"] = "1"  # every step on one core: the runs go side by side
    raw, out = Path(config.raw).resolve(), Path(config.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (pick, pick_file, best_of), (metrics, metric_files) = METRICS[config.task]

    # 1.-2. the subset, prepared (cls: and the pretrained encoder)
    if config.task == "mt":
        work, data = prepare_mt(config, raw, out)
        train = lambda name, seed, flags: train_and_score(config, data, work / name / f"seed{seed}", seed, flags)
    else:
        work, data, pretrained = prepare_cls(config, raw, out)
        train = lambda name, seed, flags: finetune(config, data, pretrained, work / name / f"seed{seed}", seed, flags)

    # 3. the baselines: every dropout, every seed
    dropouts = {f"dropout {number(d)}": number(d) for d in config.dropouts}  # config: --dropout
    groups = {name: work / f"dropout{dropout}" for name, dropout in dropouts.items()}
    in_parallel([lambda d=dropout, s=seed: train(f"dropout{d}", s, ("--dropout", d))
                 for dropout in dropouts.values() for seed in config.seeds], config.jobs)

    # 4. the tuned baseline: the dropout of the best mean `pick` over the seeds (the first of equals)
    means = {name: statistics.mean(row[pick] for row in group_rows({name: d}, config.seeds, [pick], [pick_file]))
             for name, d in groups.items()}
    best = best_of(means, key=means.get)
    dropout = dropouts[best]
    print(f"[drophead] tuned baseline ({best_of.__name__} mean {pick}): {best}", file=sys.stderr)

    # 5. DropHead at each rate on top of it, every seed
    schedule = config.drophead_schedule
    stages = []
    for p in config.drophead_p:
        config_dir = f"dropout{dropout}_{schedule}_p{number(p)}"
        groups[f"{best} + DropHead {schedule} p{number(p)}"] = work / config_dir
        flags = ("--dropout", dropout, "--drophead-p", number(p), "--drophead-schedule", schedule)
        stages += [lambda c=config_dir, s=seed, f=flags: train(c, s, f) for seed in config.seeds]
    in_parallel(stages, config.jobs)

    # 6. the CSV (mt: and the valid-loss curves beside it) and the docs' table
    rows = group_rows(groups, config.seeds, metrics, metric_files)
    csv_path = Path(config.csv)
    write_csv(csv_path, rows)
    if config.task == "mt":
        curves = csv_path.with_name(f"{csv_path.stem}_valid_loss.csv")
        valid_curves(groups, config.seeds, curves, curves.with_suffix(".png"))
        print(f"Scheduled DropHead, {config.mt.arch} on {config.mt.train_pairs} EN-FR pairs, {config.mt.max_update} "
              f"updates, test BLEU of the best-valid checkpoint:")
    else:
        print(f"Scheduled DropHead during fine-tuning on {config.cls.train_examples} cls sentences, {config.cls.arch} "
              f"pretrained as {pretrained}, test accuracy:")
    print(summary(rows, metrics))


if __name__ == "__main__":
    main()
