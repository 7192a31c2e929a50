"""Train Large, Then Compress (Li et al. 2020), the size sweeps (docs/train_large.md): for the same
minutes of training time, which model size reaches a given BLEU / perplexity first?

Stages, in order; each one's result file is its stamp, so a rerun reuses what is done:
  1. every arch of ``archs`` trained on ``data`` for ``budget_minutes`` of training time (the plugin's
     ``*_timed`` task: validation and saving not charged) with the same effective batch of
     ``batch_tokens`` tokens (micro-batches of at most ``max_micro_tokens``, ``--update-freq`` makes up
     the rest), validated every ``validate_seconds`` of training time, ``jobs`` at a time, one core
     each: ``task: mt`` with scripts/train_mt.sh (greedy detokenized valid BLEU), ``task: mlm`` with
     scripts/pretrain_mlm.sh (perplexity of the masked tokens). OUT/<arch>/ holds the run's
     checkpoints, train.log and curve.jsonl (the layout of the bash sweep_mt.sh / sweep_mlm.sh, whose
     finished runs are reused: ``data`` and ``out`` reach the pipelines as written, relative to the
     current directory, as the bash sweeps passed them);
  2. beside the CSV: Y (bleu for mt, ppl for mlm) against training time and against updates
     (``fairseq-compress plot``: Y_vs_wall.png, Y_vs_updates.png) and each run's curve
     (<arch>.curve.jsonl);
  3. the CSV (``fairseq-compress summarize``, its table printed): per run its params, training
     seconds, updates, tokens/s, final and best Y, and the smaller runs it overtakes and from when.

    .venv/bin/python -m fairseq_compress.studies.size_sweep [--config FILE] [key=value ...]

Recipes and budgets: configs/size_sweep_mt.yaml (the default) and configs/size_sweep_mlm.yaml
(configs/size_sweep_{mt,mlm}_smoke.yaml: the suite's toy runs).
"""
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from omegaconf import MISSING

from .stages import ROOT, in_parallel, number, run
from .study_config import check_translation_data, load_task_config, study_paths

TASKS = {  # task: (the pipeline that trains one run, the metric Y, fairseq-train flags of its validation)
    "mt": ("train_mt.sh", "bleu", ["--eval-bleu", "--eval-bleu-remove-bpe", "sentencepiece",
                                   "--eval-bleu-args", '{"beam": 1, "max_len_a": 1.5, "max_len_b": 10}']),
    "mlm": ("pretrain_mlm.sh", "ppl", []),
}


@dataclass
class StudyConfig:
    """Every value that differs between the two tasks' configs is MISSING here: each config states it."""
    task: str = MISSING  # mt or mlm
    data: str = MISSING
    out: str = MISSING
    csv: str = MISSING  # the plots and the curves go beside it (its folder is made if missing)
    archs: List[str] = MISSING  # any order: the CSV and the plots sort them by size
    budget_minutes: float = MISSING  # of training time, each run
    batch_tokens: int = MISSING  # the effective batch of every run
    max_micro_tokens: int = MISSING  # one forward/backward's tokens at most
    validate_seconds: float = MISSING  # of training time between validations
    lr: float = MISSING
    warmup: int = MISSING
    seed: int = MISSING
    jobs: int = MISSING  # runs at a time, one core each: 1 leaves the other core to the other sweep
    extra: List[str] = MISSING  # fairseq-train args after the recipe, e.g. [--distributed-world-size, 8]


def check_config(config: StudyConfig) -> None:
    """Bad values stop the study before any work, with one line."""
    data = Path(config.data)
    if config.task == "mt":
        check_translation_data(config.data)
    if config.task == "mlm" and not ((data / "dict.txt").is_file() and (data / "train.bin").is_file()):
        sys.exit(f"error: data={config.data} is not a data-bin of scripts/prepare_mlm.sh (dict.txt and train.bin)")
    if not config.csv.endswith(".csv"):
        sys.exit(f"error: csv={config.csv} must be a .csv file (its folder, made if missing, gets the plots and curves)")
    if not config.archs:
        sys.exit("error: archs must name at least one architecture")
    for key in ("budget_minutes", "batch_tokens", "max_micro_tokens", "jobs"):
        if config[key] <= 0:
            sys.exit(f"error: {key} must be > 0, got {config[key]}")
    if config.validate_seconds < 0:
        sys.exit(f"error: validate_seconds must be >= 0, got {config.validate_seconds}")
    check_archs(config.archs, config.task)


def check_archs(archs: List[str], task: str) -> None:
    """Each arch is registered (with the plugin's) and of the task's family: an encoder-decoder for mt."""
    import fairseq_compress  # noqa: F401  (registers the plugin's archs)
    from fairseq.models import ARCH_MODEL_REGISTRY, FairseqEncoderDecoderModel

    example = {"mt": "transformer_l3_h256", "mlm": "roberta_l3_h256"}[task]
    for arch in archs:
        if arch not in ARCH_MODEL_REGISTRY:
            sys.exit(f"error: archs: {arch} is not a registered architecture (e.g. {example})")
        if issubclass(ARCH_MODEL_REGISTRY[arch], FairseqEncoderDecoderModel) != (task == "mt"):
            sys.exit(f"error: archs: {arch} is not a {'translation' if task == 'mt' else 'masked-LM'} "
                     f"architecture (task {task}; e.g. {example})")


def batches(config: StudyConfig) -> tuple:
    """(micro-batch tokens, --update-freq): the fewest micro-batches of at most max_micro_tokens
    that make batch_tokens."""
    update_freq = -(-config.batch_tokens // config.max_micro_tokens)
    return config.batch_tokens // update_freq, update_freq


def train(config: StudyConfig, arch: str) -> None:
    """One run of the sweep with the task's pipeline, which reuses a finished run (its stamp: the command)."""
    pipeline, _, validation = TASKS[config.task]
    micro, update_freq = batches(config)
    run(["bash", ROOT / "scripts" / pipeline, config.data, Path(config.out) / arch, "--arch", arch,
         "--minutes", number(config.budget_minutes), "--max-tokens", micro, "--lr", number(config.lr),
         "--warmup", config.warmup, "--seed", config.seed, "--", "--update-freq", update_freq,
         "--validate-interval-seconds", number(config.validate_seconds), *validation, *config.extra])


def main(argv: Optional[List[str]] = None) -> None:
    config = load_task_config(StudyConfig, "size_sweep", list(TASKS), __doc__, argv, "task=mlm budget_minutes=5")
    check_config(config)
    _, out = study_paths(config)
    _, y, _ = TASKS[config.task]
    micro, update_freq = batches(config)

    # 1. every arch for the same training time and effective batch
    print(f"[size_sweep] {' '.join(config.archs)}: {number(config.budget_minutes)} min of training each, "
          f"batches of {micro} x {update_freq} tokens, validation every {number(config.validate_seconds)}s",
          file=sys.stderr)
    in_parallel([lambda a=arch: train(config, a) for arch in config.archs], config.jobs)

    # 2. the plots and the curves beside the CSV
    results = Path(config.csv).parent
    results.mkdir(parents=True, exist_ok=True)
    for x in ("wall", "updates"):
        run(["fairseq-compress", "plot", out, "--x", x, "--y", y, "--out", results / f"{y}_vs_{x}.png"])
    for arch in config.archs:
        shutil.copyfile(out / arch / "curve.jsonl", results / f"{arch}.curve.jsonl")

    # 3. the CSV, its table printed
    run(["fairseq-compress", "summarize", out, "--y", y, "--csv", config.csv], stdout=None)


if __name__ == "__main__":
    main()
