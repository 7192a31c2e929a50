"""Distillation into fast students (docs/distillation.md): does a large teacher pay at equal speed?

Stages, in order; each one's result file is its stamp, so a rerun reuses what is done:
  1. the teacher, and beside it the student arch trained from scratch (every seed);
  2. the teacher's CTranslate2 int8 export, and the training split translated by it
     (``fairseq-compress distill-data``: sequence-level KD data);
  3. the student arch with word-level KD (``--criterion distillation``), with sequence-level KD (on
     the distilled data) and with both; the deep-encoder / shallow-decoder arch with sequence-level
     KD (every seed); the teacher shrunk toward the student's speed (``fairseq-compress shrink``),
     fine-tuned with both kinds of KD (pruning + KD); every student gets the same updates;
  4. every model exported to CTranslate2 int8 and raced on the test split at each beam, one
     thread, the contenders alternating;
  5. the CSV (test BLEU, MB, sentences/s, speed against the teacher at beam 5) and the plot of
     BLEU against sentences/s.

    .venv/bin/python -m fairseq_compress.studies.distillation [--config FILE] [key=value ...]

Recipes and budgets: configs/distillation.yaml (configs/distillation_smoke.yaml: the suite's toy run).
"""
import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional


from omegaconf import MISSING

from ..compress.size import deployed_bytes
from .study_config import (RESTORE, Recipe, TranslationStudyConfig, check_translation_study, load_config,
                           mean_and_spread, recipe_flags, study_paths)
from .stages import ROOT, in_parallel, make_once, run, write_csv
from .translation_race import race
from ..plotting import pyplot



@dataclass
class Teacher:
    arch: str = MISSING
    updates: int = MISSING


@dataclass
class Student:
    arch: str = MISSING
    deep_shallow_arch: str = MISSING
    updates: int = MISSING


@dataclass
class KD:
    weight: float = MISSING
    temperature: float = MISSING
    data_beam: int = MISSING


@dataclass
class Pruned:
    heads_keep: float = MISSING
    ffn_keep: float = MISSING
    layers_keep: str = MISSING
    lr: float = MISSING
    warmup: int = MISSING


@dataclass
class Race:
    beams: List[int] = MISSING
    repeats: int = MISSING


@dataclass
class StudyConfig(TranslationStudyConfig):
    teacher: Teacher = field(default_factory=Teacher)
    student: Student = field(default_factory=Student)
    kd: KD = field(default_factory=KD)
    pruned: Pruned = field(default_factory=Pruned)
    race: Race = field(default_factory=Race)


@dataclass(frozen=True)
class Contender:
    name: str  # the row: teacher, scratch, word_kd, seq_kd, seq_word_kd, deep_shallow_seq_kd, pruned_kd
    arch: str
    seed: int
    checkpoint: Path


def check_config(config: StudyConfig) -> None:
    """Bad values stop the study before any work, with one line."""
    check_translation_study(config.data, config.csv)
    if not config.seeds or config.jobs < 1 or 5 not in config.race.beams or config.race.repeats < 1:
        sys.exit("error: seeds must not be empty, race.beams must hold 5 (the teacher's reference), "
                 "jobs and race.repeats must be >= 1")
    for name, updates in (("teacher.updates", config.teacher.updates), ("student.updates", config.student.updates)):
        if updates < 1:
            sys.exit(f"error: {name} must be >= 1, got {updates}")


def train(config: StudyConfig, data: Path, save: Path, arch: str, updates: int, seed: int = 1,
          flags: tuple = (), recipe: Optional[Recipe] = None) -> Path:
    """scripts/train_mt.sh with the study's recipe (it reuses a finished run); the last checkpoint."""
    run(["bash", ROOT / "scripts/train_mt.sh", data, save, "--arch", arch, "--max-update", updates, "--seed", seed,
         *recipe_flags(recipe or config.recipe), "--", *flags])
    return save / "checkpoint_last.pt"


def export_int8(checkpoint: Path, data: Path, out: Path) -> Path:
    make_once(out / "model.bin", ["fairseq-compress", "export", "--format", "ctranslate2", "--path", checkpoint,
                                  "--data", data, "--out", out, "--quantization", "int8", "--force"])
    return out


def kd_flags(config: StudyConfig, teacher: Path) -> list:
    return ["--criterion", "distillation", "--kd-criterion", "label_smoothed_cross_entropy", "--teacher-path",
            teacher.resolve(), "--kd-weight", config.kd.weight, "--kd-temperature", config.kd.temperature]


def race_once(out: Path, contenders: Dict[str, Path], data: Path, beam: int, repeats: int) -> dict:
    """{name: [BLEU, sentences/s]} of the CTranslate2 race at `beam`, run once into `out`."""
    if not out.exists():
        results = race({name: (path, []) for name, path in contenders.items()}, data, repeats, ["--beam", str(beam)])
        out.write_text(json.dumps(results))
    return json.loads(out.read_text())


def write_rows(path: Path, contenders: List[Contender], exported: Dict[str, Path], races: Dict[int, dict]) -> list:
    teacher_speed = races[5]["teacher"][1]  # the target's reference: the teacher at beam 5
    rows = []
    for contender in contenders:
        key = exported_key(contender)
        for beam, results in races.items():
            bleu, speed = results[key]
            rows.append({"model": contender.name, "arch": contender.arch, "seed": contender.seed, "beam": beam,
                         "bleu": bleu, "mb": round(deployed_bytes(exported[key]) / 1e6, 2),
                         "sentences_per_s": speed, "speed_vs_teacher_beam5": round(speed / teacher_speed, 2)})
    write_csv(path, rows)
    return rows


def exported_key(contender: Contender) -> str:
    return f"{contender.name}_seed{contender.seed}" if contender.name != "teacher" else "teacher"


def plot(rows: list, out: Path) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7, 4.5))
    names = list(dict.fromkeys(row["model"] for row in rows))
    for colour, name in zip(plt.cm.tab10.colors, names):
        for beam, marker in ((5, "o"), (1, "^")):
            mine = [row for row in rows if row["model"] == name and row["beam"] == beam]
            if mine:
                ax.scatter([r["sentences_per_s"] for r in mine], [r["bleu"] for r in mine], color=colour,
                           marker=marker, label=f"{name}, beam {beam}")
    ax.set_xscale("log")
    ax.set_xlabel("sentences/s (CTranslate2 int8, 1 thread, log scale)")
    ax.set_ylabel("test BLEU")
    ax.set_title("Distillation: BLEU against speed (each seed a point)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def summary(rows: list) -> str:
    """The docs' table: per model and beam, BLEU mean +- std over seeds, speed and its ratio."""
    lines = ["| model | beam | test BLEU | MB | sentences/s | vs teacher beam 5 |", "|---|---:|---:|---:|---:|---:|"]
    for name in dict.fromkeys(row["model"] for row in rows):
        for beam in dict.fromkeys(row["beam"] for row in rows):
            mine = [row for row in rows if row["model"] == name and row["beam"] == beam]
            lines.append(f"| {name} | {beam} | {mean_and_spread([r['bleu'] for r in mine])} | {mine[0]['mb']} | "
                         f"{statistics.mean(r['sentences_per_s'] for r in mine):.1f} | "
                         f"{statistics.mean(r['speed_vs_teacher_beam5'] for r in mine):.2f}x |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    config = load_config(StudyConfig, "distillation", __doc__, argv, "seeds=[1] teacher.updates=2000")
    check_config(config)
    data, out = study_paths(config)
    student = config.student

    # 1. the teacher, and the student arch from scratch beside it
    teacher = out / "teacher" / "checkpoint_last.pt"
    scratch = {seed: out / "scratch" / f"seed{seed}" for seed in config.seeds}
    in_parallel([lambda: train(config, data, teacher.parent, config.teacher.arch, config.teacher.updates)]
                + [lambda s=seed: train(config, data, scratch[s], student.arch, student.updates, s)
                   for seed in config.seeds], config.jobs)

    # 2. the teacher under CTranslate2 int8, and the training split translated by it
    exported = {"teacher": export_int8(teacher, data, out / "ct2" / "teacher")}
    kd_data = out / "kd_data"
    make_once(kd_data / "distill_data.json", ["fairseq-compress", "distill-data", "--teacher", exported["teacher"],
                                              "--data", data, "--out", kd_data, "--beam", config.kd.data_beam])

    # 3. the students with KD, and the teacher shrunk then fine-tuned with KD
    shrunk = out / "pruned" / "shrunk.pt"
    shrunk.parent.mkdir(exist_ok=True)
    make_once(shrunk, ["fairseq-compress", "shrink", "--path", teacher, "--out", shrunk, "--heads-keep",
                       config.pruned.heads_keep, "--ffn-keep", config.pruned.ffn_keep,
                       "--layers-keep", config.pruned.layers_keep])
    word_kd = tuple(kd_flags(config, teacher))
    runs = {  # name: (arch, data, fairseq-train flags)
        "word_kd": (student.arch, data, word_kd),
        "seq_kd": (student.arch, kd_data, ()),
        "seq_word_kd": (student.arch, kd_data, word_kd),
        "deep_shallow_seq_kd": (student.deep_shallow_arch, kd_data, ()),
    }
    contenders = [Contender("teacher", config.teacher.arch, 1, teacher)]
    contenders += [Contender("scratch", student.arch, seed, scratch[seed] / "checkpoint_last.pt") for seed in config.seeds]
    contenders += [Contender(name, arch, seed, out / name / f"seed{seed}" / "checkpoint_last.pt")
                   for name, (arch, _, _) in runs.items() for seed in config.seeds]
    pruned = out / "pruned" / "finetuned"
    contenders.append(Contender("pruned_kd", config.teacher.arch, 1, pruned / "checkpoint_last.pt"))
    # the slowest first (the teacher-sized model), then seed by seed: a study cut short has whole seeds
    stages = [lambda: train(config, kd_data, pruned, config.teacher.arch, student.updates, 1,
                            (*word_kd, "--restore-file", shrunk, *RESTORE),
                            Recipe(config.pruned.lr, config.pruned.warmup, config.recipe.max_tokens))]
    stages += [lambda a=arch, c=corpus, f=flags, s=seed, n=name: train(config, c, out / n / f"seed{s}", a,
                                                                       student.updates, s, f)
               for seed in config.seeds for name, (arch, corpus, flags) in runs.items()]
    in_parallel(stages, config.jobs)

    # 4. CTranslate2 int8, raced at each beam on one thread
    for contender in contenders[1:]:
        exported[exported_key(contender)] = export_int8(contender.checkpoint, data,
                                                         out / "ct2" / exported_key(contender))
    races = {beam: race_once(out / f"race_beam{beam}.json", exported, data, beam, config.race.repeats)
             for beam in sorted(config.race.beams, reverse=True)}

    # 5. the CSV, the plot and the docs' table
    rows = write_rows(Path(config.csv), contenders, exported, races)
    plot(rows, Path(config.csv).with_suffix(".png"))
    print(summary(rows))


if __name__ == "__main__":
    main()
