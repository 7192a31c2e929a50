"""A classification fine-tuning regime that trains the plugin's encoders to their plateau
(docs/electra.md#the-classification-regime): every earlier cls result fine-tuned 800 updates (about 0.6
epoch) and landed below word+bigram Naive Bayes. Where do the models stop improving, and are they then
above the trivial baselines?

Stages, in order; each one's result file is its stamp, so a rerun reuses what is done:
  1. the Naive Bayes line: fairseq_compress/corpus/nb_baseline.py on the TSVs of ``raw_cls`` (OUT/naive_bayes.json);
  2. the search: each start of ``search.starts`` (a model of ``starts``: from scratch, or a pretrained
     checkpoint) fine-tuned (scripts/finetune_cls.sh, its recipe fairseq_compress/config/cls_finetune.yaml)
     with each lr of ``search.lrs`` and batch of ``search.batch_sizes``, for ``search.epochs`` epochs,
     validated on dev ``search.validations_per_epoch`` times an epoch, ``jobs`` at a time, into
     OUT/search/<start>/lr<LR>_b<B>/: its dev accuracy curve;
  3. the regime: the lr and batch of the highest mean (over the searched starts) best dev accuracy, and
     the updates at which every searched start's curve has come within ``tolerance`` points of its best
     (OUT/regime.json);
  4. every start of ``measure`` fine-tuned in that regime, every seed (OUT/measure/<start>/seed<N>/:
     test accuracy of the checkpoint best on dev);
  5. the CSV ``csv`` (a row per run of stage 4), the curves ``curves`` (every search run's dev accuracy,
     and the plot beside it with the Naive Bayes line), and the mean +- std table.

    .venv/bin/python -m fairseq_compress.studies.cls_regime [--config FILE] [key=value ...]

Recipes and budgets: configs/cls_regime.yaml (configs/cls_regime_smoke.yaml: the suite's toy run).
"""
import csv
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from omegaconf import MISSING

from . import summarize_runs
from .fairseq_log import records
from .stages import ROOT, finetune_cls, in_parallel, number, write_text_once
from .study_config import check_cls_task, check_csv, load_config
from ..plotting import pyplot


@dataclass
class Start:
    """What a fine-tuning starts from: an arch and its pretrained checkpoint (null: random weights)."""
    arch: str = MISSING
    checkpoint: Optional[str] = None
    extra: List[str] = field(default_factory=list)  # fairseq-train args the arch needs (ELECTRA's depth)


@dataclass
class Search:
    starts: List[str] = MISSING
    lrs: List[float] = MISSING
    batch_sizes: List[int] = MISSING
    epochs: int = MISSING
    validations_per_epoch: int = MISSING
    seed: int = MISSING


@dataclass
class StudyConfig:
    cls: str = MISSING  # scripts/prepare_glue.sh's data-bin of the task
    raw_cls: str = MISSING  # its TSVs (train.tsv.gz, dev.tsv.gz, test.tsv.gz): the Naive Bayes line
    out: str = MISSING
    csv: str = MISSING
    curves: str = MISSING  # the search's dev-accuracy curves; the plot goes beside it (.png)
    jobs: int = MISSING
    starts: Dict[str, Start] = MISSING
    search: Search = field(default_factory=Search)
    tolerance: float = MISSING  # accuracy points below a curve's best that count as its plateau
    measure: List[str] = MISSING
    seeds: List[int] = MISSING


@dataclass
class Regime:
    lr: float
    batch_size: int
    updates: int


def check_config(config: StudyConfig) -> None:
    """Bad values stop the study before any work, with one line."""
    check_cls_task(config.cls)
    if not all((Path(config.raw_cls) / f"{split}.tsv.gz").is_file() for split in ("train", "dev", "test")):
        sys.exit(f"error: raw_cls={config.raw_cls} must hold train.tsv.gz, dev.tsv.gz and test.tsv.gz")
    for name in (*config.search.starts, *config.measure):
        if name not in config.starts:
            sys.exit(f"error: start '{name}' is not one of starts ({', '.join(config.starts)})")
        checkpoint = config.starts[name].checkpoint
        if checkpoint and not Path(checkpoint).is_file():
            sys.exit(f"error: starts.{name}.checkpoint: no such checkpoint: {checkpoint} (the pretrainings of "
                     f"python -m fairseq_compress.studies.electra_vs_mlm write them)")
    search = config.search
    if not (search.lrs and search.batch_sizes and search.starts and config.measure and config.seeds):
        sys.exit("error: search.lrs, search.batch_sizes, search.starts, measure and seeds must not be empty")
    if min(search.epochs, search.validations_per_epoch, config.jobs, *search.batch_sizes) < 1 or config.tolerance < 0:
        sys.exit("error: search.epochs, search.validations_per_epoch, jobs and every batch size must be >= 1, "
                 "tolerance >= 0")
    for key in ("csv", "curves"):
        check_csv(key, config[key])


def naive_bayes_dev_accuracy(raw_cls: Path, result: Path) -> float:
    """fairseq_compress/corpus/nb_baseline.py's dev accuracy (in %), once."""
    if not result.exists():
        printed = subprocess.run([sys.executable, str(ROOT / "fairseq_compress/corpus/nb_baseline.py"), str(raw_cls)],
                                 capture_output=True, text=True, check=True).stdout
        dev = float(re.search(r"dev accuracy ([0-9.]+)", printed).group(1))
        result.write_text(json.dumps({"dev_accuracy": round(100 * dev, 2)}) + "\n")
    return json.loads(result.read_text())["dev_accuracy"]


def train_examples(cls: Path) -> int:
    """The task's training sentences (fairseq's own dataset of input0/train)."""
    from fairseq.data import data_utils

    return len(data_utils.load_indexed_dataset(str(cls / "input0/train"), None))


def finetune(config: StudyConfig, save: Path, start: str, lr: float, batch: int, updates: int, seed: int,
             validate_every: Optional[int] = None) -> None:
    """One fine-tuning of a start with an lr and batch, validated (and saved) every `validate_every` updates."""
    model = config.starts[start]
    validation = ["--validate-interval-updates", validate_every, "--save-interval-updates", validate_every] \
        if validate_every else []
    finetune_cls(config.cls, save, model.arch, updates, seed, model.checkpoint,
                 ["--lr", number(lr), "--batch-size", batch], [*model.extra, *validation])


def search_dir(out: Path, start: str, lr: float, batch: int) -> Path:
    return out / "search" / start / f"lr{number(lr)}_b{batch}"


def dev_curve(save: Path) -> List[Tuple[int, float]]:
    """[(updates, dev accuracy)] of a run's validations."""
    return [(int(r["num_updates"]), r["accuracy"]) for r in records((save / "train.log").read_text(), "valid")]


def plateau(curve: List[Tuple[int, float]], tolerance: float) -> int:
    """The first validation's updates at which the curve is within `tolerance` points of its best."""
    best = max(accuracy for _, accuracy in curve)
    return next(updates for updates, accuracy in curve if accuracy >= best - tolerance)


Curves = Dict[Tuple[str, float, int], List[Tuple[int, float]]]  # (start, lr, batch): its dev curve


def search_curves(config: StudyConfig, out: Path) -> Curves:
    """The dev curve of every search run."""
    return {(s, lr, b): dev_curve(search_dir(out, s, lr, b))
            for s in config.search.starts for lr in config.search.lrs for b in config.search.batch_sizes}


def choose_regime(config: StudyConfig, runs: Curves) -> Regime:
    """The searched lr and batch of the highest mean best dev accuracy over the searched starts, for the
    updates that bring every one of them to its plateau."""
    def curves(lr, batch):
        return [runs[start, lr, batch] for start in config.search.starts]

    lr, batch = max(((lr, batch) for lr in config.search.lrs for batch in config.search.batch_sizes),
                    key=lambda g: sum(max(a for _, a in c) for c in curves(*g)) / len(config.search.starts))
    return Regime(lr, batch, max(plateau(c, config.tolerance) for c in curves(lr, batch)))


def search_table(runs: Curves, tolerance: float) -> str:
    """Markdown: per search run its best dev accuracy, the updates it came at, and the first validation within
    `tolerance` of it (where the run's plateau starts)."""
    lines = ["| start | lr | batch | best dev accuracy | at update | within tolerance from |", "|---|---:|---:|---:|---:|---:|"]
    for (start, lr, batch), curve in runs.items():
        best_updates, best = max(curve, key=lambda point: point[1])
        lines.append(f"| {start} | {number(lr)} | {batch} | {best:.2f} | {best_updates} | {plateau(curve, tolerance)} |")
    return "\n".join(lines)


def write_curves(config: StudyConfig, runs: Curves, naive_bayes: float, regime: Regime) -> None:
    """Every search run's dev accuracy (CSV: start, lr, batch, updates, dev accuracy) and the plot: one
    panel per start, one line per lr and batch, the Naive Bayes line and the chosen regime's updates."""
    with open(config.curves, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["start", "lr", "batch_size", "num_updates", "dev_accuracy"])
        writer.writerows([s, number(lr), b, u, a] for (s, lr, b), curve in runs.items() for u, a in curve)

    plt = pyplot()

    starts = config.search.starts
    fig, axes = plt.subplots(1, len(starts), figsize=(5.5 * len(starts), 4), squeeze=False, sharey=True)
    for ax, start in zip(axes[0], starts):
        for (s, lr, b), curve in runs.items():
            if s == start:
                ax.plot(*zip(*curve), marker=".", label=f"lr {number(lr)}, batch {b}")
        ax.axhline(naive_bayes, color="grey", ls="--", label=f"Naive Bayes {naive_bayes:.1f}")
        ax.axvline(regime.updates, color="black", lw=0.8, ls=":", label="chosen updates")
        ax.set(title=start, xlabel="updates", ylabel="dev accuracy (%)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(Path(config.curves).with_suffix(".png"), dpi=120)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> None:
    config = load_config(StudyConfig, "cls_regime", __doc__, argv, "seeds=[1] search.epochs=3")
    check_config(config)
    os.environ["OMP_NUM_THREADS"] = "1"  # one run per core, `jobs` at a time
    out = Path(config.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    search = config.search

    # 1. the Naive Bayes line
    naive_bayes = naive_bayes_dev_accuracy(Path(config.raw_cls), out / "naive_bayes.json")

    # 2. the search: every start, lr and batch for search.epochs epochs, with their dev curves
    examples = train_examples(Path(config.cls))
    trainings = []
    for start in search.starts:
        for lr in search.lrs:
            for batch in search.batch_sizes:
                per_epoch = math.ceil(examples / batch)
                every = max(1, per_epoch // search.validations_per_epoch)
                trainings.append(lambda s=start, lr=lr, b=batch, n=per_epoch * search.epochs, v=every:
                                 finetune(config, search_dir(out, s, lr, b), s, lr, b, n, search.seed, v))
    in_parallel(trainings, config.jobs)

    # 3. the regime: lr, batch and updates
    runs = search_curves(config, out)
    regime = choose_regime(config, runs)
    write_text_once(out / "regime.json", json.dumps(regime.__dict__) + "\n")
    print(f"[cls_regime] regime: lr {number(regime.lr)}, batch {regime.batch_size}, {regime.updates} updates "
          f"({regime.updates * regime.batch_size / examples:.1f} epochs); Naive Bayes dev {naive_bayes:.2f}",
          file=sys.stderr)
    print(f"the search, one seed (tolerance {config.tolerance} points):\n{search_table(runs, config.tolerance)}\n")
    sys.stdout.flush()

    # 4. every start of `measure` in that regime, every seed
    in_parallel([lambda s=start, n=seed: finetune(config, out / "measure" / s / f"seed{n}", s, regime.lr,
                                                  regime.batch_size, regime.updates, n)
                 for seed in config.seeds for start in config.measure], config.jobs)

    # 5. the curves and their plot, the CSV and the table
    write_curves(config, runs, naive_bayes, regime)
    print(f"cls fine-tuning at lr {number(regime.lr)}, batch {regime.batch_size}, {regime.updates} updates "
          f"(Naive Bayes dev accuracy: {naive_bayes:.2f}):")
    sys.stdout.flush()
    summarize_runs.main([f"{start}={out / 'measure' / start}" for start in config.measure]
                        + ["--metric", "accuracy", "dev_accuracy", "--metric-file", "accuracy.json", "--csv", config.csv])


if __name__ == "__main__":
    main()
