"""Distillation of a classifier (docs/distillation.md#classification): does a larger fine-tuned encoder,
as a teacher of logits, make a small one better at the same fine-tuning budget, and how much faster is the
small one?

Stages, in order; each one's result file is its stamp, so a rerun reuses what is done:
  1. the teacher fine-tuned (scripts/finetune_cls.sh, the recipe fairseq_compress/config/cls_finetune.yaml:
     the classification regime), and beside it the student arch fine-tuned from scratch, every seed;
  2. the student arch fine-tuned with logit KD from the teacher's checkpoint best on dev
     (``--criterion distillation --kd-criterion sentence_prediction``), every seed, the same recipe;
  3. the speed of the teacher's and the student's arch: eval_cls.sh --speed (fairseq-validate with its
     forward passes timed) on one thread and on two, the two alternating (KD changes weights, not speed:
     one checkpoint of each arch races);
  4. the CSV (test and dev accuracy of each run's checkpoint best on dev, MB, sentences/s, speed against
     the teacher) and the mean +- std table.

    .venv/bin/python -m fairseq_compress.studies.distillation_cls [--config FILE] [key=value ...]

Recipes and budgets: configs/distillation_cls.yaml (configs/distillation_cls_smoke.yaml: the suite's toy run).
"""
import json
import os
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from omegaconf import MISSING

from ..compress.size import deployed_bytes
from .cls_regime import Start
from .stages import finetune_cls, in_parallel, number, write_csv
from .structured_race import race_once
from .study_config import check_cls_task, check_csv, load_config, mean_and_spread


@dataclass
class KD:
    weight: float = MISSING
    temperature: float = MISSING


@dataclass
class Race:
    repeats: int = MISSING
    sentences: Optional[int] = None  # of each split (dev, test) per timed run; null: all of them


@dataclass
class StudyConfig:
    cls: str = MISSING  # scripts/prepare_glue.sh's data-bin of the task
    out: str = MISSING
    csv: str = MISSING
    jobs: int = MISSING
    seeds: List[int] = MISSING  # of the student rows
    teacher: Start = MISSING
    student: str = MISSING
    updates: Optional[int] = None  # of every fine-tuning; null: the recipe's (the classification regime)
    kd: KD = field(default_factory=KD)
    race: Race = field(default_factory=Race)


def check_config(config: StudyConfig) -> None:
    """Bad values stop the study before any work, with one line."""
    check_cls_task(config.cls)
    if config.teacher.checkpoint and not Path(config.teacher.checkpoint).is_file():
        sys.exit(f"error: teacher.checkpoint: no such checkpoint: {config.teacher.checkpoint}")
    optional = [value for value in (config.updates, config.race.sentences) if value is not None]
    if not config.seeds or min(config.jobs, config.race.repeats, *optional) < 1:
        sys.exit("error: seeds must not be empty, jobs, race.repeats, race.sentences and updates must be >= 1")
    if not 0 <= config.kd.weight <= 1 or not config.kd.temperature > 0:
        sys.exit(f"error: kd.weight must be in [0, 1] and kd.temperature > 0, got {config.kd.weight} and "
                 f"{config.kd.temperature}")
    check_csv("csv", config.csv)


def kd_flags(config: StudyConfig, teacher: Path) -> list:
    return ["--criterion", "distillation", "--kd-criterion", "sentence_prediction", "--teacher-path", teacher,
            "--kd-weight", number(config.kd.weight), "--kd-temperature", number(config.kd.temperature)]


def accuracy(save: Path) -> dict:
    """finetune_cls.sh's scores of a run: test and dev accuracy of its checkpoint best on dev."""
    return json.loads((save / "accuracy.json").read_text())


def write_rows(config: StudyConfig, runs: dict, speeds: dict) -> list:
    """A CSV row per run {(model, seed): save dir}; speed is the arch's (every run of a model races as one)."""
    teacher_speed = speeds["teacher"]["sent_s_1"]
    rows = []
    for (model, seed), save in runs.items():
        scores, speed = accuracy(save), speeds["teacher" if model == "teacher" else "student"]
        rows.append({"model": model, "arch": config.teacher.arch if model == "teacher" else config.student,
                     "seed": seed, "accuracy": scores["accuracy"], "dev_accuracy": scores["dev_accuracy"],
                     "mb": round(deployed_bytes(save / "checkpoint_best.pt") / 1e6, 2),
                     "sentences_per_s_1": speed["sent_s_1"], "sentences_per_s_2": speed["sent_s_2"],
                     "speed_vs_teacher": round(speed["sent_s_1"] / teacher_speed, 2)})
    write_csv(Path(config.csv), rows)
    return rows


def summary(rows: list) -> str:
    """The docs' table: per model, accuracy mean +- std over seeds, its size and speed."""
    lines = ["| model | arch | test accuracy | dev accuracy | MB | sentences/s (1 thread) | vs teacher |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for model in dict.fromkeys(row["model"] for row in rows):
        mine = [row for row in rows if row["model"] == model]
        lines.append(f"| {model} | {mine[0]['arch']} | {mean_and_spread([r['accuracy'] for r in mine])} | "
                     f"{mean_and_spread([r['dev_accuracy'] for r in mine])} | {mine[0]['mb']} | "
                     f"{statistics.mean(r['sentences_per_s_1'] for r in mine):.1f} | {mine[0]['speed_vs_teacher']:.2f}x |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    config = load_config(StudyConfig, "distillation_cls", __doc__, argv, "seeds=[1] kd.temperature=1")
    check_config(config)
    os.environ["OMP_NUM_THREADS"] = "1"  # one run per core, `jobs` at a time
    cls, out = Path(config.cls).resolve(), Path(config.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    teacher = out / "teacher"
    runs = {("teacher", 1): teacher}
    runs.update({("scratch", seed): out / "scratch" / f"seed{seed}" for seed in config.seeds})
    runs.update({("logit_kd", seed): out / "logit_kd" / f"seed{seed}" for seed in config.seeds})

    # 1. the teacher (the slowest first), and the student from scratch beside it
    in_parallel([lambda: finetune_cls(cls, teacher, config.teacher.arch, config.updates, 1, config.teacher.checkpoint,
                                      extra=config.teacher.extra)]
                + [lambda s=seed: finetune_cls(cls, runs["scratch", s], config.student, config.updates, s)
                   for seed in config.seeds], config.jobs)

    # 2. the student with logit KD from the teacher's checkpoint best on dev
    kd = kd_flags(config, teacher / "checkpoint_best.pt")
    in_parallel([lambda s=seed: finetune_cls(cls, runs["logit_kd", s], config.student, config.updates, s, extra=kd)
                 for seed in config.seeds], config.jobs)

    # 3. the two archs' speed, alternating, on one thread and on two
    speeds = race_once(out / "race.json", "cls", [("teacher", teacher / "checkpoint_best.pt", "fp32"),
                                                  ("student", runs["scratch", config.seeds[0]] / "checkpoint_best.pt",
                                                   "fp32")], cls, config.race.repeats, config.race.sentences)

    # 4. the CSV and the docs' table
    print(summary(write_rows(config, runs, speeds)))


if __name__ == "__main__":
    main()
