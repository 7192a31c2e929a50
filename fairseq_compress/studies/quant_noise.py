"""Quant-Noise on translation (docs/quant_noise.md#quant-noise-study): does noise during training
make the iPQ drop smaller, and what does it cost the uncompressed model?

Stages, in order; each one's result file is its stamp, so a rerun reuses what is done:
  1. the same model trained (scripts/train_mt.sh) with each noise configuration of ``configs``
     (``noise``: name -> the fairseq-train flags it adds), every seed, ``jobs`` at a time, into
     OUT/<config>/seed<N>/;
  2. each run's ``checkpoint_last.pt`` compressed three ways: ``fairseq-compress ipq`` fine-tuning
     the centroids between stages with the task loss alone (ipq.pt) and with ``--distill`` (KL to
     the uncompressed model, ipq_distill.pt), and ``fairseq-compress quantize`` to int8 (int8.pt);
     each tool's JSON report beside its file (ipq.json, ipq_distill.json, int8.json);
  3. test BLEU (scripts/eval_bleu.sh: detokenized sacreBLEU) of the fp32 model and of each
     compressed one (bleu.<model>.json);
  4. each run's row (results.json: BLEU of each model, the iPQ drops, MB on disk), the CSV (a row per
     config and seed), its mean +- std table, and the plot beside the CSV (BLEU of each model per
     config, mean and std over seeds).

    .venv/bin/python -m fairseq_compress.studies.quant_noise [--config FILE] [key=value ...]

Recipes and budgets: configs/quant_noise.yaml (configs/quant_noise_smoke.yaml: the suite's toy run).
"""
import csv
import json
import shlex
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from omegaconf import MISSING

from . import summarize_runs
from .stages import ROOT, in_parallel, run, run_once
from .study_config import TranslationStudyConfig, check_translation_study, load_config, recipe_flags, study_paths
from ..plotting import pyplot

MODELS = ("checkpoint_last", "ipq", "ipq_distill", "int8")  # the files scored, fp32 first
METRICS = ("bleu_fp32", "bleu_ipq", "ipq_drop", "bleu_ipq_distill", "ipq_distill_drop", "bleu_int8",
           "mb_fp32", "mb_ipq", "mb_int8")  # results.json's keys: the CSV's columns after config and seed
PLOTTED = {"bleu_fp32": "fp32", "bleu_ipq": "iPQ", "bleu_ipq_distill": "iPQ + distill", "bleu_int8": "int8"}
@dataclass
class Ipq:
    config: str = MISSING  # stages, block sizes, centroids
    finetune_updates: int = MISSING  # of the centroids, after each stage (--distill fine-tunes: >= 1)


@dataclass
class StudyConfig(TranslationStudyConfig):
    """Its values: configs/quant_noise.yaml."""
    arch: str = MISSING
    max_update: int = MISSING
    qn: str = MISSING  # the flags every noised configuration starts with (${qn} in noise)
    noise: Dict[str, str] = MISSING  # name -> the fairseq-train flags it adds
    configs: List[str] = MISSING  # the noise configurations run, in the CSV's order
    ipq: Ipq = field(default_factory=Ipq)


def check_config(config: StudyConfig) -> None:
    """Bad values stop the study before any work, with one line (fairseq-train checks the noise flags)."""
    check_translation_study(config.data, config.csv)
    if not config.seeds or not config.configs or config.jobs < 1 or config.max_update < 1:
        sys.exit("error: seeds and configs must not be empty, jobs and max_update must be >= 1")
    for name in config.configs:
        if name not in config.noise:
            sys.exit(f"error: configs: unknown config '{name}' (known: {' '.join(config.noise)})")
    if config.ipq.finetune_updates < 1:
        sys.exit(f"error: ipq.finetune_updates must be >= 1 (--distill fine-tunes), got {config.ipq.finetune_updates}")
    if not (ROOT / config.ipq.config).is_file():
        sys.exit(f"error: ipq.config={config.ipq.config}: no such file")


def train(config: StudyConfig, data: Path, save: Path, seed: int, flags: List[str]) -> Path:
    """scripts/train_mt.sh with the study's recipe and one noise configuration (it reuses a finished run)."""
    run(["bash", ROOT / "scripts/train_mt.sh", data, save, "--arch", config.arch, "--max-update", config.max_update,
         "--seed", seed, *recipe_flags(config.recipe), "--", *flags])
    return save / "checkpoint_last.pt"


def compress(config: StudyConfig, data: Path, save: Path) -> None:
    """iPQ (task loss, then with --distill) and int8 of the run's last checkpoint, each report once."""
    checkpoint, ipq = save / "checkpoint_last.pt", ["--config", ROOT / config.ipq.config, "--data", data,
                                                     "--finetune-updates", config.ipq.finetune_updates, "--force"]
    run_once(save / "ipq.json", ["fairseq-compress", "ipq", "--path", checkpoint, "--out", save / "ipq.pt", *ipq])
    run_once(save / "ipq_distill.json", ["fairseq-compress", "ipq", "--path", checkpoint,
                                         "--out", save / "ipq_distill.pt", *ipq, "--distill"])
    run_once(save / "int8.json", ["fairseq-compress", "quantize", "--path", checkpoint, "--bits", 8,
                                  "--out", save / "int8.pt", "--force"])


def results(save: Path) -> dict:
    """One run's row from its JSON files: BLEU of each model, the iPQ drops, MB (10^6 bytes) on disk."""
    def read(name):
        return json.loads((save / name).read_text())

    ipq, int8 = read("ipq.json"), read("int8.json")
    bleu = {model: read(f"bleu.{model}.json")["bleu"] for model in MODELS}
    return {"bleu_fp32": bleu["checkpoint_last"], "bleu_ipq": bleu["ipq"], "bleu_int8": bleu["int8"],
            "ipq_drop": round(bleu["checkpoint_last"] - bleu["ipq"], 2),
            "bleu_ipq_distill": bleu["ipq_distill"],
            "ipq_distill_drop": round(bleu["checkpoint_last"] - bleu["ipq_distill"], 2),
            "mb_fp32": round(ipq["fp32_model_bytes"] / 1e6, 2), "mb_ipq": round(ipq["file_bytes"] / 1e6, 2),
            "mb_int8": round(int8["file_bytes"] / 1e6, 2)}


def read_by_config(path: Path) -> Dict[str, List[Dict[str, float]]]:
    """The CSV's plotted BLEU columns, rows grouped by config, in the CSV's order."""
    by_config: Dict[str, List[Dict[str, float]]] = defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            by_config[row["config"]].append({m: float(row[m]) for m in PLOTTED})
    if not by_config:
        sys.exit(f"error: {path} has no rows")
    return by_config


def plot(by_config: Dict[str, List[Dict[str, float]]], out: Path) -> None:
    """Test BLEU of each model per noise config, mean over seeds with the std as an error bar (none
    with one seed), so the fp32 cost of the noise and the iPQ drop it saves read off one figure."""
    plt = pyplot()

    width = 0.8 / len(PLOTTED)
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (metric, label) in enumerate(PLOTTED.items()):
        values = [[row[metric] for row in rows] for rows in by_config.values()]
        means = [statistics.mean(v) for v in values]
        stds = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
        ax.bar([x + (i - 1.5) * width for x in range(len(values))], means, width, yerr=stds, capsize=3, label=label)
    ax.set_xticks(range(len(by_config)), [f"{c}\n({len(rows)} seeds)" for c, rows in by_config.items()])
    ax.set_xlabel("noise during training")
    ax.set_ylabel("test BLEU")
    ax.set_title("Quant-Noise: BLEU of each compressed model, mean ± std over seeds")
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: Optional[List[str]] = None) -> None:
    config = load_config(StudyConfig, "quant_noise", __doc__, argv, "configs=[none,pq0.1] seeds=[1]")
    check_config(config)
    data, out = study_paths(config)
    runs = {(name, seed): out / name / f"seed{seed}" for name in config.configs for seed in config.seeds}

    # 1. the model trained with each noise configuration, every seed
    in_parallel([lambda s=save, k=key: train(config, data, s, k[1], shlex.split(config.noise[k[0]]))
                 for key, save in runs.items()], config.jobs)

    # 2. each run compressed with iPQ (without and with --distill) and to int8
    in_parallel([lambda s=save: compress(config, data, s) for save in runs.values()], config.jobs)

    # 3. test BLEU of the fp32 model and of each compressed one
    in_parallel([lambda s=save, m=model: run_once(s / f"bleu.{m}.json", ["bash", ROOT / "scripts/eval_bleu.sh",
                                                                        s / f"{m}.pt", data, "--json"])
                 for save in runs.values() for model in MODELS], config.jobs)

    # 4. each run's row, the CSV with its table, and the plot beside the CSV
    for (name, seed), save in runs.items():
        if not (save / "results.json").exists():
            (save / "results.json.tmp").write_text(json.dumps(results(save)))
            (save / "results.json.tmp").replace(save / "results.json")
        print(f"{name} seed {seed}: {(save / 'results.json').read_text()}", file=sys.stderr)
    print(f"Quant-Noise, {config.arch}, {config.max_update} updates, EN->FR test BLEU and MB (10^6 bytes):")
    sys.stdout.flush()
    summarize_runs.main([f"{name}={out / name}" for name in config.configs] + [
        "--metric-file", "results.json", "--metric", *METRICS, "--csv", config.csv])
    plot(read_by_config(Path(config.csv)), Path(config.csv).with_suffix(".png"))


if __name__ == "__main__":
    main()
