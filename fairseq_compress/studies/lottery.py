"""Lottery tickets on translation (docs/pruning.md#lottery-tickets): does the larger model hold the better
ticket at the same number of remaining weights ("Train Large, Then Compress")?

Stages, in order; each one's result file is its stamp, so a rerun reuses what is done:
  1. per arch and seed, three ``--prune-schedule imp`` runs of ``rounds`` rounds (``rate`` of the
     survivors each; the targets end at 1 - (1 - rate)^rounds sparsity), each round
     ``round_updates`` long, one checkpoint per round end: survivors rewound to an early update
     (``imp_rewind``), to initialization (``imp_init``), and set to a fresh initialization
     (``random_reinit``, the control);
  2. one-shot magnitude pruning (``oneshot``) of the dense model (``imp_rewind``'s first round) to
     each round's sparsity, fine-tuned for ``round_updates``: as many updates as a ticket's last round;
     stages 1 and 2 share one queue, the larger arch's runs first, each one-shot run after its imp_rewind run;
  3. test BLEU of every round end and one-shot model (scripts/eval_bleu.sh, one thread each; the IMP runs'
     first round, the same dense model in all three, once);
  4. the CSV: a row per model with its measured sparsity and remaining target weights, and for the
     larger arch the smaller arch's BLEU at the same remaining weights (same arm, interpolated in log
     weights between its rounds) and the difference; the plot of BLEU against sparsity and against
     remaining weights.

    .venv/bin/python -m fairseq_compress.studies.lottery [--config FILE] [key=value ...]

Recipes and budgets: configs/lottery.yaml (configs/lottery_smoke.yaml: the suite's toy run).
"""
import json
import math
import statistics
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import torch
from omegaconf import MISSING

from .study_config import (RESTORE, TranslationStudyConfig, check_translation_study, load_config,
                           mean_and_spread, recipe_flags, study_paths)
from .stages import ROOT, in_parallel, run, write_csv
from .translation_race import translate
from ..plotting import pyplot

ARMS = ("imp_rewind", "imp_init", "random_reinit", "oneshot")


@dataclass
class Lottery:
    archs: List[str] = MISSING  # two, the smaller first
    rounds: int = MISSING
    rate: float = MISSING  # of the survivors, each round
    round_updates: int = MISSING
    rewind_update: int = MISSING  # imp_rewind's early update (Frankle et al. 2020); imp_init rewinds to 0


@dataclass
class Evaluation:
    split: str = MISSING
    beam: int = MISSING


@dataclass
class StudyConfig(TranslationStudyConfig):
    """Its values: configs/lottery.yaml."""
    lottery: Lottery = field(default_factory=Lottery)
    eval: Evaluation = field(default_factory=Evaluation)


def check_config(config: StudyConfig) -> None:
    """Bad values stop the study before any work, with one line (fairseq-train checks the imp flags)."""
    check_translation_study(config.data, config.csv)
    if not config.seeds or config.jobs < 1 or len(config.lottery.archs) != 2:
        sys.exit("error: seeds must not be empty, jobs must be >= 1, lottery.archs must name two archs "
                 "(the smaller first)")
    if config.lottery.rounds < 1 or config.lottery.round_updates < 1:
        sys.exit("error: lottery.rounds and lottery.round_updates must be >= 1")


def train(config: StudyConfig, data: Path, save: Path, arch: str, updates: int, seed: int, flags: tuple) -> None:
    """scripts/train_mt.sh with the study's recipe (it reuses a finished run), a checkpoint per round."""
    rounds = config.lottery.round_updates
    run(["bash", ROOT / "scripts/train_mt.sh", data, save, "--arch", arch, "--max-update", updates, "--seed", seed,
         *recipe_flags(config.recipe), "--",
         "--task", "translation_pruning", "--save-interval-updates", rounds, "--keep-interval-updates", -1, *flags])


def imp_flags(config: StudyConfig, arm: str) -> tuple:
    lottery = config.lottery
    rewind = lottery.rewind_update if arm == "imp_rewind" else 0
    control = ("--ticket-control", "random-reinit") if arm == "random_reinit" else ()
    return ("--prune-schedule", "imp", "--imp-rounds", lottery.rounds, "--imp-rate", lottery.rate,
            "--imp-round-updates", lottery.round_updates, "--rewind-update", rewind, *control)


def round_end(save: Path, update: int) -> Path:
    """The checkpoint fairseq saved after `update` updates (checkpoint_EPOCH_UPDATE.pt)."""
    found = list(save.glob(f"checkpoint_*_{update}.pt"))
    if not found:
        sys.exit(f"error: {save} holds no checkpoint of update {update} (fairseq saves none where a round ends with an "
                 f"epoch): choose another lottery.round_updates")
    return found[0]


def sparsity(config: StudyConfig, round_: int) -> float:
    return 1 - (1 - config.lottery.rate) ** round_


def bleu_once(out: Path, checkpoint: Path, data: Path, config: StudyConfig) -> None:
    """Test BLEU, measured sparsity and remaining target weights of one model, once into `out`."""
    if out.exists():
        return
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]
    masks = [value for key, value in state.items() if key.endswith(".0.mask")]
    remaining = sum(int(mask.sum()) for mask in masks)
    bleu, _ = translate(checkpoint, data, options=["--split", config.eval.split, "--beam", str(config.eval.beam)])
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps({"bleu": bleu, "remaining_weights": remaining,
                               "sparsity": round(1 - remaining / sum(mask.numel() for mask in masks), 4)}))
    tmp.replace(out)


def at_remaining(points: List[tuple], remaining: int) -> Optional[float]:
    """BLEU at `remaining` weights, linear in log(weights) between the two nearest (weights, BLEU) points;
    None outside their range."""
    points = sorted(points)
    for (w0, b0), (w1, b1) in zip(points, points[1:]):
        if w0 <= remaining <= w1:
            t = (math.log(remaining) - math.log(w0)) / (math.log(w1) - math.log(w0)) if w1 > w0 else 0.0
            return b0 + t * (b1 - b0)
    return None


def write_rows(path: Path, rows: list, small: str, large: str) -> list:
    """Add the equal-remaining-weights comparison to the larger arch's rows; write the CSV."""
    for row in rows:
        row["small_bleu_at_same_remaining"] = row["large_minus_small"] = ""
        if row["arch"] == large:
            points = [(r["remaining_weights"], r["bleu"]) for r in rows
                      if r["arch"] == small and r["arm"] == row["arm"] and r["seed"] == row["seed"]]
            small_bleu = at_remaining(points, row["remaining_weights"])
            if small_bleu is not None:
                row["small_bleu_at_same_remaining"] = round(small_bleu, 2)
                row["large_minus_small"] = round(row["bleu"] - small_bleu, 2)
    write_csv(path, rows)
    return rows


def plot(rows: list, out: Path) -> None:
    plt = pyplot()

    fig, (by_sparsity, by_remaining) = plt.subplots(1, 2, figsize=(11, 4.5))
    archs = list(dict.fromkeys(row["arch"] for row in rows))
    for colour, arm in zip(plt.cm.tab10.colors, ARMS):
        for arch, style in zip(archs, ("--", "-")):
            mine = sorted((r for r in rows if r["arm"] == arm and r["arch"] == arch), key=lambda r: r["sparsity"])
            if mine:
                seeds = len({r["seed"] for r in mine})
                points = {}  # mean over seeds at each round
                for r in mine:
                    points.setdefault(r["round"], []).append(r)
                xs = [statistics.mean(r["sparsity"] for r in p) for p in points.values()]
                ws = [statistics.mean(r["remaining_weights"] for r in p) for p in points.values()]
                ys = [statistics.mean(r["bleu"] for r in p) for p in points.values()]
                label = f"{arm}, {arch}" + (f" ({seeds} seeds)" if seeds > 1 else "")
                by_sparsity.plot(xs, ys, style, color=colour, marker="o", label=label)
                by_remaining.plot(ws, ys, style, color=colour, marker="o", label=label)
    by_sparsity.set_xlabel("sparsity of the pruned weights")
    by_remaining.set_xscale("log")
    by_remaining.set_xlabel("remaining weights (log scale)")
    for ax in (by_sparsity, by_remaining):
        ax.set_ylabel("test BLEU")
    by_sparsity.set_title("BLEU against sparsity")
    by_remaining.set_title("at equal remaining weights: larger (-) vs smaller (--)")
    by_sparsity.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def summary(rows: list) -> str:
    """The docs' table: per arch, arm and round, BLEU mean +- std over seeds, and the comparison."""
    lines = ["| arch | arm | sparsity | remaining weights | test BLEU | smaller arch at same weights |",
             "|---|---|---:|---:|---:|---:|"]
    for arch in dict.fromkeys(row["arch"] for row in rows):
        for arm in ARMS:
            for round_ in sorted({r["round"] for r in rows if r["arch"] == arch and r["arm"] == arm}):
                mine = [r for r in rows if r["arch"] == arch and r["arm"] == arm and r["round"] == round_]
                small = [r["small_bleu_at_same_remaining"] for r in mine if r["small_bleu_at_same_remaining"] != ""]
                lines.append(f"| {arch} | {arm} | {mine[0]['sparsity']:.3f} | {mine[0]['remaining_weights']:,} | "
                             f"{mean_and_spread([r['bleu'] for r in mine])} | "
                             f"{f'{statistics.mean(small):.2f}' if small else ''} |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    config = load_config(StudyConfig, "lottery", __doc__, argv, "seeds=[1,2] lottery.rounds=5")
    check_config(config)
    data, out = study_paths(config)
    lottery = config.lottery
    runs = [(arch, seed) for arch in lottery.archs for seed in config.seeds]

    # 1-2. in one queue, the larger arch's runs first (the longest first keep both cores busy to the end):
    #   1. the three IMP runs of every arch and seed, a checkpoint at each round's end;
    #   2. one-shot pruning of the dense model (imp_rewind's first round) to each round's sparsity, fine-tuned;
    #      each waits for its imp_rewind run, queued before it (so running or done: no deadlock)
    saves = {(arm, arch, seed): out / arm / arch / f"seed{seed}"
             for arch, seed in reversed(runs) for arm in ARMS[:3]}
    all_rounds = (lottery.rounds + 1) * lottery.round_updates
    dense_done = {run: threading.Event() for run in runs}

    def imp_run(key: tuple, save: Path) -> None:
        try:
            train(config, data, save, key[1], all_rounds, key[2], imp_flags(config, key[0]))
        finally:
            if key[0] == "imp_rewind":
                dense_done[key[1:]].set()

    def oneshot_save(arch: str, seed: int, round_: int) -> Path:
        return out / "oneshot" / arch / f"seed{seed}" / f"round{round_}"

    def oneshot_run(arch: str, seed: int, round_: int) -> None:
        dense_done[(arch, seed)].wait()
        dense = round_end(saves[("imp_rewind", arch, seed)], lottery.round_updates).resolve()
        train(config, data, oneshot_save(arch, seed, round_), arch, lottery.round_updates, seed,
              ("--prune-sparsity", sparsity(config, round_), "--restore-file", dense, *RESTORE))

    rounds = range(1, lottery.rounds + 1)
    oneshots = [(arch, seed, round_) for arch, seed in reversed(runs) for round_ in rounds]
    in_parallel([lambda k=key, d=save: imp_run(k, d) for key, save in saves.items()] +
                [lambda o=oneshot: oneshot_run(*o) for oneshot in oneshots], config.jobs)
    models = {(arm, arch, seed, round_): round_end(save, (round_ + 1) * lottery.round_updates)
              for (arm, arch, seed), save in saves.items() for round_ in range(lottery.rounds + 1)}
    models.update({("oneshot", *oneshot): oneshot_save(*oneshot) / "checkpoint_last.pt" for oneshot in oneshots})

    # 3. test BLEU of every model, one thread each; the three IMP runs share their first round (the same
    #    seed and updates: rewinding and the control's fresh draw change nothing before the first mask), scored once
    scored_as = {key: ("imp_rewind", *key[1:]) if key[3] == 0 else key for key in models}
    scores = {key: out / "bleu" / f"{'_'.join(map(str, scored_as[key]))}.json" for key in models}
    (out / "bleu").mkdir(exist_ok=True)
    distinct = dict.fromkeys(scored_as.values())
    in_parallel([lambda k=key: bleu_once(scores[k], models[k], data, config) for key in distinct], config.jobs)

    # 4. the CSV, the plot and the docs' table
    rows = [{"arch": arch, "arm": arm, "seed": seed, "round": round_, **json.loads(scores[key].read_text())}
            for key in models for arm, arch, seed, round_ in [key]]
    rows.sort(key=lambda r: (lottery.archs.index(r["arch"]), ARMS.index(r["arm"]), r["seed"], r["round"]))
    rows = write_rows(Path(config.csv), rows, *lottery.archs)
    plot(rows, Path(config.csv).with_suffix(".png"))
    print(summary(rows))


if __name__ == "__main__":
    main()
