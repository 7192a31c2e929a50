"""ELECTRA vs masked-LM pretraining at the same wall-clock budget, then the same fine-tuning on the
shipped cls task (docs/electra.md#electra-vs-masked-lm-at-the-same-wall-clock-budget).

``electra.arch`` scaled to ``layers`` layers (electra_small: hidden 256, embedding 128, generator at
1/4) against ``mlm.arch`` (the discriminator's shape) trained with the stock masked_lm criterion, and
a no-pretraining baseline of ``mlm.arch``. The paper's schedule: warmup over the first
``pretrain.warmup_percent`` of the updates, then linear decay to 0 (AdamW, weight decay 0.01).

Stages, in order; each one's result file is its stamp, so a rerun reuses what is done:
  1. the text and the cls task prepared (scripts/prepare_mlm.sh, prepare_glue.sh) from RAW/en, RAW/cls;
  2. a calibration run of each model (scripts/pretrain_mlm.sh, ``pretrain.calibration_updates``), both
     side by side, one core each, so they see the same load: each one's training seconds per update
     sets the number of updates that fits in ``pretrain.minutes`` (linear decay needs it up front);
  3. the two pretrainings, side by side, into OUT/<model>/pretrain/;
  4. their training curves (the discriminator's accuracy on replaced tokens, the generator's and the
     masked LM's perplexity: CSV ``curves``, and the plot beside it) and each one's pretraining columns
     (OUT/<model>/group.json: updates reached, tokens/s);
  5. the fine-tunings on cls (scripts/finetune_cls.sh: test and dev accuracy), ``jobs`` at a time:
     the pretrained models seed by seed, then the baseline, into OUT/{electra,mlm,scratch}/seed<N>/;
  6. the CSV (a row per run) and its mean +- std table.

    .venv/bin/python -m fairseq_compress.studies.electra_vs_mlm [--config FILE] [key=value ...]

Recipes and budgets: configs/electra_vs_mlm.yaml (configs/electra_vs_mlm_smoke.yaml: the suite's toy run).
"""
import csv
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from fairseq.models import ARCH_MODEL_REGISTRY
from omegaconf import MISSING

from . import summarize_runs, train_stats
from .stages import ROOT, finetune_cls, in_parallel, run, write_text_once
from .study_config import check_csv, load_config
from ..plotting import pyplot

ELECTRA_METRICS = ("disc_acc_replaced", "disc_acc", "replaced_frac", "gen_ppl")  # the curves' metrics of each run
MLM_METRICS = ("ppl",)


@dataclass
class Model:
    arch: str = MISSING
    criterion: str = MISSING


@dataclass
class Pretrain:
    minutes: float = MISSING  # each model's training time, side by side (validation and saving not counted)
    calibration_updates: int = MISSING
    lr: float = MISSING
    max_tokens: int = MISSING
    warmup_percent: int = MISSING  # of the updates, then linear decay to 0
    checkpoints: int = MISSING  # --save-interval-updates: this many over a run
    log_interval: int = MISSING  # the calibration times every record after the first: it needs two
    min_updates: int = MISSING  # the floor of the updates in the budget (the smoke's few seconds on a loaded machine)


@dataclass
class Finetune:
    updates: Optional[int] = None  # null: the cls recipe's (fairseq_compress/config/cls_finetune.yaml)


@dataclass
class StudyConfig:
    raw: str = MISSING  # RAW/en (text), RAW/cls (TSVs)
    en: str = MISSING  # prepare_mlm.sh's data-bin
    cls: str = MISSING  # prepare_glue.sh's data-bin
    out: str = MISSING
    csv: str = MISSING
    curves: str = MISSING  # the pretraining curves' CSV; the plot goes beside it
    jobs: int = MISSING
    seeds: List[int] = MISSING
    vocab_size: int = MISSING  # prepare_mlm.sh's sentencepiece
    layers: int = MISSING  # of both pretrained models (and the baseline)
    electra: Model = MISSING  # --encoder-layers ${layers}
    mlm: Model = MISSING
    pretrain: Pretrain = field(default_factory=Pretrain)
    finetune: Finetune = field(default_factory=Finetune)


def check_config(config: StudyConfig) -> None:
    """Bad values stop the study before any work, with one line."""
    pretrain = config.pretrain
    for key in ("electra", "mlm"):
        arch = config[key].arch
        if arch not in ARCH_MODEL_REGISTRY:
            sys.exit(f"error: {key}.arch={arch} is not a registered architecture (layers={config.layers}: "
                     f"roberta_l<L>_h<H> has L in 2, 3, 6, 12, 18, 24)")
    raw = Path(config.raw)
    if not (raw / "en").is_dir() or not (raw / "cls").is_dir():
        sys.exit(f"error: raw={config.raw} must hold en/ (text for prepare_mlm.sh) and cls/ (TSVs for prepare_glue.sh)")
    for key in ("csv", "curves"):
        check_csv(key, config[key])
    updates = config.finetune.updates
    if not config.seeds or config.jobs < 1 or (updates is not None and updates < 1) or not pretrain.minutes > 0:
        sys.exit("error: seeds must not be empty, jobs and finetune.updates must be >= 1, and pretrain.minutes > 0")
    if pretrain.min_updates < 1:
        sys.exit(f"error: pretrain.min_updates must be >= 1, got {pretrain.min_updates}")
    if pretrain.log_interval < 1 or pretrain.calibration_updates < 2 * pretrain.log_interval:
        sys.exit(f"error: pretrain.calibration_updates must be >= 2 x pretrain.log_interval = "
                 f"{2 * pretrain.log_interval} (two timed records), got {pretrain.calibration_updates}")


def pretrain(config: StudyConfig, en: Path, save: Path, name: str, updates: int, schedule: str) -> None:
    """scripts/pretrain_mlm.sh of model `name` (it reuses a finished run), on one core."""
    model, recipe = config[name], config.pretrain
    depth = ["--encoder-layers", config.layers] if name == "electra" else []
    run(["bash", ROOT / "scripts/pretrain_mlm.sh", en, save, "--arch", model.arch, "--criterion", model.criterion,
         "--max-tokens", recipe.max_tokens, "--lr", recipe.lr, "--schedule", schedule, "--max-update", updates,
         "--warmup", updates * recipe.warmup_percent // 100, "--", *depth, "--log-interval", recipe.log_interval,
         "--save-interval-updates", -(-updates // recipe.checkpoints)])


def updates_in_budget(config: StudyConfig, calibration_log: Path) -> int:
    """The updates of pretrain.minutes at the calibration's training seconds per update (as printed, 4 decimals)."""
    rate = train_stats.seconds_per_update(calibration_log.read_text(encoding="utf-8"))
    if rate is None:
        sys.exit(f"error: {calibration_log} has fewer than two 'train_inner' records")
    updates = max(config.pretrain.min_updates, int(config.pretrain.minutes * 60 / float(f"{rate:.4f}")))
    print(f"{calibration_log.parent.parent.name}: {rate:.4f} s/update side by side -> {updates} updates in "
          f"{config.pretrain.minutes:g} min", file=sys.stderr)
    return updates


def finetune(config: StudyConfig, cls: Path, save: Path, name: str, seed: int, pretrained: Optional[Path]) -> None:
    """One fine-tuning on one core: ELECTRA's discriminator at the study's depth, or the masked LM's shape."""
    arch = config.electra.arch if name == "electra" else config.mlm.arch
    depth = ["--encoder-layers", config.layers] if name == "electra" else []
    finetune_cls(cls, save, arch, config.finetune.updates, seed, pretrained, extra=depth)


def pretraining_columns(log: Path) -> dict:
    """The table's columns of one pretraining: the updates it reached, its tokens/s."""
    stats = train_stats.last_train_stats(log.read_text(encoding="utf-8"))
    if stats is None:
        sys.exit(f"error: {log} has no end-of-epoch 'train' record (did the run finish?)")
    return train_stats.pretraining_columns(stats)


def inner_points(log: Path) -> list:
    """[(num_updates, {metric: value})] of every 'train_inner' record of a --log-format json log."""
    points = [(int(stats["num_updates"]), stats) for stats in train_stats.inner_points(log.read_text(encoding="utf-8"))]
    if not points:
        sys.exit(f"error: {log} has no 'train_inner' record (was it trained with --log-format json?)")
    return points


def series(points: list, metric: str) -> tuple:
    """(updates, values) of `metric` where the log has it."""
    kept = [(update, stats[metric]) for update, stats in points if metric in stats]
    return [u for u, _ in kept], [v for _, v in kept]


def write_curves(electra_log: Path, mlm_log: Path, out: Path, png: Path) -> None:
    """The pretraining curves: one CSV row per (run, update, metric), and the plot: the discriminator's
    accuracy on replaced tokens (0 is the trivial 'everything is original' answer) and on all tokens,
    and the generator's perplexity next to the masked LM's."""
    runs = {"electra": (inner_points(electra_log), ELECTRA_METRICS), "mlm": (inner_points(mlm_log), MLM_METRICS)}
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "num_updates", "metric", "value"])
        for name, (points, metrics) in runs.items():
            for update, stats in points:
                writer.writerows([name, update, m, stats[m]] for m in metrics if m in stats)

    plt = pyplot()

    electra, mlm = runs["electra"][0], runs["mlm"][0]
    fig, (acc, ppl) = plt.subplots(1, 2, figsize=(11, 4))
    for metric, label in (("disc_acc_replaced", "replaced tokens"), ("disc_acc", "all tokens")):
        acc.plot(*series(electra, metric), label=label)
    acc.axhline(0, color="grey", lw=0.8, ls="--")
    acc.set(xlabel="updates", ylabel="discriminator accuracy (%)",
            title="ELECTRA discriminator (0 on replaced = trivial)")
    acc.legend()
    ppl.plot(*series(electra, "gen_ppl"), label="ELECTRA generator")
    ppl.plot(*series(mlm, "ppl"), label="masked LM")
    ppl.set(xlabel="updates", ylabel="perplexity of masked tokens", yscale="log", title="Masked-token perplexity")
    ppl.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> None:
    config = load_config(StudyConfig, "electra_vs_mlm", __doc__, argv, "pretrain.minutes=20 seeds=[1]")
    check_config(config)
    os.environ["OMP_NUM_THREADS"] = "1"  # every step on one core: the pretrainings side by side, fine-tunings in parallel
    raw, en, cls, out = (Path(p).resolve() for p in (config.raw, config.en, config.cls, config.out))
    out.mkdir(parents=True, exist_ok=True)
    models = ("electra", "mlm")

    # 1. the pretraining text and the cls task
    run(["bash", ROOT / "scripts/prepare_mlm.sh", raw / "en", en, "--vocab-size", config.vocab_size])
    run(["bash", ROOT / "scripts/prepare_glue.sh", raw / "cls", cls, en])

    # 2. the calibration runs, side by side: each model's seconds per update -> its updates in the budget
    calibration = config.pretrain.calibration_updates
    in_parallel([lambda n=name: pretrain(config, en, out / n / "calibration", n, calibration, "inverse_sqrt")
                 for name in models], len(models))
    updates = {name: updates_in_budget(config, out / name / "calibration" / "train.log") for name in models}

    # 3. the pretrainings, side by side, linear decay to 0 at their updates
    in_parallel([lambda n=name: pretrain(config, en, out / n / "pretrain", n, updates[n], "linear")
                 for name in models], len(models))

    # 4. the pretraining curves, and each model's pretraining columns of the table
    curves = Path(config.curves)
    write_curves(out / "electra/pretrain/train.log", out / "mlm/pretrain/train.log", curves, curves.with_suffix(".png"))
    for name in models:
        write_text_once(out / name / "group.json", json.dumps(pretraining_columns(out / name / "pretrain/train.log")) + "\n")
    (out / "scratch").mkdir(exist_ok=True)
    write_text_once(out / "scratch/group.json", '{"pretraining updates": 0, "tokens/s": "-"}\n')

    # 5. the fine-tunings on cls: the pretrained models seed by seed, then the baseline
    stages = [lambda n=name, s=seed: finetune(config, cls, out / n / f"seed{s}", n, s, out / n / "pretrain/checkpoint_last.pt")
              for seed in config.seeds for name in models]
    stages += [lambda s=seed: finetune(config, cls, out / "scratch" / f"seed{s}", "scratch", s, None)
               for seed in config.seeds]
    in_parallel(stages, config.jobs)

    # 6. the CSV of every run, and the table
    print(f"ELECTRA vs MLM, {config.pretrain.minutes:g} min of pretraining each (one core each, at the same time, "
          f"linear decay), cls fine-tuning ({config.finetune.updates} updates):")
    sys.stdout.flush()
    summarize_runs.main([f"ELECTRA ({config.electra.arch}, {config.layers} layers)={out / 'electra'}",
                         f"MLM ({config.mlm.arch})={out / 'mlm'}", f"no pretraining ({config.mlm.arch})={out / 'scratch'}",
                         "--metric", "accuracy", "dev_accuracy", "--metric-file", "accuracy.json", "--csv", config.csv])


if __name__ == "__main__":
    main()
