"""The main job (scripts/demo.sh), end to end on the corpus shipped in data-bin/raw. Stages, in order; each
one's file is its stamp, remade when what it is made from is newer (a rerun reuses every finished stage):
  1. the data: ``raw`` prepared into ``data`` (scripts/prepare_mt.sh; raw null: ``data`` is prepared);
  2. the dense model: ``arch`` trained for ``minutes`` of training time with the translation recipe,
     fairseq_compress/config/mt_en_fr.yaml (scripts/train_mt.sh, on every core);
  3. two chains at once, one core each, so that compression and evaluation overlap:
     the dense model, int8 (fairseq-compress quantize, run by fairseq-generate's int8 kernels), iPQ;
     its heads and FFN neurons removed (fairseq-compress shrink), fine-tuned at the new shapes
     (``finetune``), that + int8, and that exported to CTranslate2 int8.
     Every artifact is translated on the test split (scripts/eval_bleu.sh: beam 5, one thread, one pass);
  4. the table: each artifact's test BLEU with its signature, MB on disk and sentences/s, printed and written
     to RESULTS/demo.{csv,png} (demo_table.py).

    .venv/bin/python -m fairseq_compress.studies.demo [--config FILE] [key=value ...]

Its recipe: configs/demo.yaml; configs/demo_smoke.yaml: a toy run.
"""
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from omegaconf import MISSING

from . import demo_table
from .stages import ROOT, in_parallel, number, run, run_once, threads_env
from .study_config import IPQ, RESTORE, ipq_command, ipq_stages, is_translation_data, load_config
from .translation_race import INT8

@dataclass
class Shrink:
    heads_keep: float = MISSING
    ffn_keep: float = MISSING


@dataclass
class Finetune:
    updates: int = MISSING
    lr: float = MISSING
    warmup: int = MISSING


@dataclass
class DemoConfig:
    raw: Optional[str] = MISSING  # null: data is prepared already
    data: str = MISSING
    out: str = MISSING
    results: str = MISSING
    arch: str = MISSING
    minutes: float = MISSING
    shrink: Shrink = field(default_factory=Shrink)
    finetune: Finetune = field(default_factory=Finetune)
    ipq: IPQ = field(default_factory=IPQ)


def check_config(config: DemoConfig) -> None:
    """Bad values stop the demo before any work, with one line."""
    if config.raw is not None:
        if not any((Path(config.raw) / name).is_file() for name in ("train.en", "train.en.gz")):
            sys.exit(f"error: raw={config.raw} holds no train.en(.gz): the shipped corpus is data-bin/raw/en_fr")
    elif not is_translation_data(config.data):
        sys.exit(f"error: with raw null, data={config.data} must be a data-bin of scripts/prepare_mt.sh")
    if not config.minutes > 0:
        sys.exit(f"error: minutes must be a positive number (of training time), got {config.minutes}")
    for key, value in (("finetune.updates", config.finetune.updates), ("ipq.finetune_updates", config.ipq.finetune_updates),
                       ("ipq.n_iter", config.ipq.n_iter)):
        if value < 1:
            sys.exit(f"error: {key} must be a positive integer, got {value}")
    for key in ("heads_keep", "ffn_keep"):
        if not 0 < getattr(config.shrink, key) <= 1:
            sys.exit(f"error: shrink.{key} must be a fraction in (0, 1], got {getattr(config.shrink, key)}")
    ipq_stages(config.ipq)
    if not Path(config.results).is_dir():
        sys.exit(f"error: results={config.results} is not a directory")


def stamp(artifact: Path) -> Path:
    """The file whose time is the artifact's: a CTranslate2 directory's model.bin."""
    return artifact / "model.bin" if artifact.is_dir() else artifact


def newer(out: Path, source: Path) -> bool:
    """Whether `out` was made after `source` (an `out` older than a remade source is remade too)."""
    return stamp(out).exists() and stamp(out).stat().st_mtime >= stamp(source).stat().st_mtime


def log(message: str) -> None:
    """Progress on stderr: the stages' own output goes to their logs."""
    print(f"[demo] {message}", file=sys.stderr, flush=True)


def make(out: Path, source: Path, cmd: List) -> None:
    """Run cmd, which writes `out` from `source` (replacing it: --force), unless `out` is newer than `source`."""
    if not newer(out, source):
        log(f"{cmd[0]} {cmd[1]} -> {out}")
        run(cmd)


def evaluate(artifact: Path, data: Path, int8: bool = False) -> Path:
    """ARTIFACT.bleu.json: its test BLEU and speed (eval_bleu.sh, which keeps the hypotheses and the translation
    log beside the artifact), remade when the artifact is newer."""
    result = artifact.parent / f"{artifact.name.removesuffix('.pt')}.bleu.json"
    if result.exists() and not newer(result, artifact):
        result.unlink()
    if not result.exists():
        run_once(result, ["bash", ROOT / "scripts/eval_bleu.sh", artifact, data, "--json", *(["--", *INT8] if int8 else [])])
        scores = json.loads(result.read_text())
        log(f"{artifact}: test BLEU {scores['bleu']}, {scores['sentences_per_s']} sentences/s")
    return result


def removed(shrink: Shrink) -> str:
    """What shrinking removes: '50% heads+FFN', or '50% heads, 25% FFN'."""
    heads, ffn = (f"{100 * (1 - keep):.0f}%" for keep in (shrink.heads_keep, shrink.ffn_keep))
    return f"{heads} heads+FFN" if heads == ffn else f"{heads} heads, {ffn} FFN"


def main(argv: Optional[List[str]] = None) -> None:
    config = load_config(DemoConfig, "demo", __doc__, argv, "minutes=5 arch=transformer_l2_h128")
    check_config(config)
    data, out = Path(config.data).resolve(), Path(config.out).resolve()
    out.mkdir(parents=True, exist_ok=True)

    # 1-2. the data and the dense model (training takes every core)
    if config.raw is not None:
        log(f"preparing {config.raw} -> {config.data} (reused when prepared)")
        run(["bash", ROOT / "scripts/prepare_mt.sh", Path(config.raw).resolve(), data])
    log(f"training {config.arch} for {number(config.minutes)} min -> {out / 'dense'} (log: train.log there)")
    run(["bash", ROOT / "scripts/train_mt.sh", data, out / "dense", "--arch", config.arch, "--minutes",
         number(config.minutes)])
    log("compressing and evaluating, two chains at once")
    dense = out / "dense/checkpoint_best.pt"

    # 3. two chains, one core each
    os.environ.update(threads_env(1))
    int8, ipq = out / "int8.pt", out / "ipq.pt"
    shrunk, tuned = out / "shrunk.pt", out / "shrunk_ft"
    shrunk_ft, shrunk_int8, shrunk_ct2 = tuned / "checkpoint_last.pt", out / "shrunk_int8.pt", out / "shrunk_ct2_int8"

    def dense_chain() -> None:
        evaluate(dense, data)
        make(int8, dense, ["fairseq-compress", "quantize", "--path", dense, "--out", int8, "--bits", "8", "--force"])
        evaluate(int8, data, int8=True)
        make(ipq, dense, ipq_command(config.ipq, dense, ipq, data))
        evaluate(ipq, data)

    def shrunk_chain() -> None:
        make(shrunk, dense, ["fairseq-compress", "shrink", "--path", dense, "--out", shrunk, "--heads-keep",
                             number(config.shrink.heads_keep), "--ffn-keep", number(config.shrink.ffn_keep), "--force"])
        finetune = config.finetune
        force = ["--force"] if (tuned / ".done").exists() and not newer(tuned / ".done", shrunk) else []
        log(f"fine-tuning {shrunk} for {finetune.updates} updates -> {tuned}")
        run(["bash", ROOT / "scripts/train_mt.sh", data, tuned, "--arch", config.arch, "--max-update", finetune.updates,
             "--lr", number(finetune.lr), "--warmup", finetune.warmup, *force, "--", "--restore-file", shrunk, *RESTORE])
        evaluate(shrunk_ft, data)
        make(shrunk_int8, shrunk_ft, ["fairseq-compress", "quantize", "--path", shrunk_ft, "--out", shrunk_int8,
                                      "--bits", "8", "--force"])
        evaluate(shrunk_int8, data, int8=True)
        make(shrunk_ct2, shrunk_ft, ["fairseq-compress", "export", "--format", "ctranslate2", "--path", shrunk_ft,
                                     "--data", data, "--out", shrunk_ct2, "--quantization", "int8", "--force"])
        evaluate(shrunk_ct2, data)

    in_parallel([shrunk_chain, dense_chain], jobs=2)

    # 4. the table
    artifacts = {"dense fp32": dense, "int8 (fairseq-generate)": int8,
                 f"shrunk {removed(config.shrink)}, fine-tuned": shrunk_ft, "shrunk + int8": shrunk_int8, "iPQ": ipq,
                 "shrunk, CTranslate2 int8": shrunk_ct2}
    rows = [demo_table.row(name, artifact, evaluate(artifact, data, int8=artifact in (int8, shrunk_int8)))
            for name, artifact in artifacts.items()]
    results = Path(config.results)
    print(f"\nEN->FR, shipped test split: {config.arch} trained {number(config.minutes)} min on {os.cpu_count()} CPU "
          f"cores, then compressed and deployed:")
    print(demo_table.markdown(rows))
    demo_table.write_table(rows, results / "demo.csv")
    demo_table.plot(rows, results / "demo.png", f"{config.arch}, {number(config.minutes)} min of training: "
                                                 "every artifact of the demo")
    print(f"(also in {results / 'demo.csv'} and {results / 'demo.png'})")
    # A distilled student needs a teacher trained for most of an hour: it does not fit these 15 minutes.
    print("Distillation into fast students (its own ~3 h study): docs/distillation.md")


if __name__ == "__main__":
    main()
