"""Train Large, Then Compress (Li et al. 2020), at this machine's scale: for each trained model
(CKPT_DIR/checkpoint_best.pt; translation or sentence classification),
  - quantize to each of --bits (fairseq-compress quantize),
  - prune one-shot to each of --sparsities (fairseq-compress prune, fp16 nonzeros),
  - prune gradually while fine-tuning --finetune-updates updates (the *_pruning task, cubic
    schedule over the first 2/3), then store it sparse,
evaluate each file with the stock fairseq tools (eval_bleu.sh: test BLEU; eval_cls.sh: test
accuracy), and write a CSV (model, params, method, sparsity, bits, MB on disk, metric) and a PNG
of metric vs MB, one line per original model: the paper's figure (lib/compression_plot.py).
Every step's output is a file under --out, reused when present, so an interrupted sweep resumes.

    .venv/bin/python scripts/compression_sweep.py CKPT_DIR... [--out checkpoints/compression_sweep]
        [--data DIR] [--sparsities 0.3 0.5 0.7 0.9] [--bits 8 6 4] [--finetune-updates 300]
        [--methods quantize oneshot gradual] [--csv docs/results/compression_sweep.csv]
"""
import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List

from fairseq_compress.checkpoint_info import trained_as
from fairseq_compress.modules.scalar_quantizer import BITS
from fairseq_compress.compress.size import checkpoint_size
from fairseq_compress.studies.stages import ROOT, make_once, run, run_once

TASKS = ("translation", "sentence_prediction")
METHODS = ("quantize", "oneshot", "gradual")
RESTORE = ["--reset-optimizer", "--reset-dataloader", "--reset-meters", "--reset-lr-scheduler"]


@dataclass(frozen=True)
class Model:
    name: str  # CKPT_DIR's name, the sweep's label for it
    checkpoint: Path
    task: str  # translation or sentence_prediction
    arch: str
    data: Path
    work: Path  # --out/<name>: every file the sweep makes of this model


def describe(model: Model, file: Path, method: str, sparsity: float, bits: int) -> None:
    """FILE.result.json: one row of the sweep, its size and metric (each step once)."""
    base = file.with_suffix("")
    result = Path(f"{base}.result.json")
    if result.exists():
        return
    metric_file = Path(f"{base}.metric.json")
    if model.task == "translation":
        run_once(metric_file, ["bash", ROOT / "scripts/eval_bleu.sh", file, model.data, "--json"])
    else:
        run_once(metric_file, ["bash", ROOT / "scripts/eval_cls.sh", file, model.data])
    scores = json.loads(metric_file.read_text())
    size = checkpoint_size(str(file))
    # The original's MB are its fp32 weights (a training checkpoint also holds the optimizer's state).
    stored = size["model_params"] * 4 if method == "original" else size["file_bytes"]
    metric = "bleu" if "bleu" in scores else "accuracy"
    result.write_text(json.dumps({"model": model.name, "params": size["model_params"], "method": method,
                                  "sparsity": sparsity, "bits": bits, "mb": round(stored / 1e6, 3),
                                  "metric": metric, "value": scores[metric]}))


def gradual_finetune(model: Model, save: Path, sparsity: float, updates: int) -> List:
    """The command that fine-tunes `model` into `save` with the pruning task, the schedule over the first 2/3."""
    prune = ["--prune-sparsity", sparsity, "--prune-schedule", "gradual", "--prune-start-update", 0,
             "--prune-end-update", updates * 2 // 3, "--prune-frequency", (updates + 9) // 10,
             "--restore-file", model.checkpoint.resolve(), *RESTORE]
    if model.task == "translation":
        return ["bash", ROOT / "scripts/train_mt.sh", model.data, save, "--arch", model.arch, "--max-update", updates,
                "--lr", "0.0005", "--warmup", 1, "--max-tokens", 2048, "--", "--task", "translation_pruning", *prune]
    return ["bash", ROOT / "scripts/finetune_cls.sh", model.data, save, "--arch", model.arch, "--max-update", updates,
            "--lr", "1e-5", "--", "--task", "sentence_prediction_pruning", *prune]


def sweep(model: Model, args: argparse.Namespace) -> None:
    work = model.work
    work.mkdir(parents=True, exist_ok=True)
    original = work / "original.pt"
    if not original.exists():  # absent, or a link left dangling by a moved checkpoint: (re)link it
        original.unlink(missing_ok=True)
        original.symlink_to(model.checkpoint.resolve())
    describe(model, original, "original", 0, 32)
    ckpt = model.checkpoint
    if "quantize" in args.methods:
        for bits in args.bits:
            out = work / f"int{bits}.pt"
            make_once(out, ["fairseq-compress", "quantize", "--path", ckpt, "--bits", bits, "--out", out])
            describe(model, out, "quantize", 0, bits)
    if "oneshot" in args.methods:
        for sparsity in args.sparsities:
            out = work / f"oneshot_s{sparsity}.pt"
            make_once(out, ["fairseq-compress", "prune", "--path", ckpt, "--sparsity", sparsity, "--out", out])
            describe(model, out, "oneshot", sparsity, 16)
    if "gradual" in args.methods:
        for sparsity in args.sparsities:
            out, save = work / f"gradual_s{sparsity}.pt", work / f"gradual_s{sparsity}"
            if not out.exists():
                run(gradual_finetune(model, save, sparsity, args.finetune_updates))
                run(["fairseq-compress", "prune", "--path", save / "checkpoint_last.pt", "--sparsity", sparsity,
                     "--out", out])
            describe(model, out, "gradual", sparsity, 16)


def read_model(ckpt_dir: Path, args: argparse.Namespace) -> Model:
    """What CKPT_DIR's checkpoint was trained as; a one-line error for what the sweep cannot take."""
    checkpoint = ckpt_dir / "checkpoint_best.pt"
    if not checkpoint.is_file():
        sys.exit(f"error: CKPT_DIR {ckpt_dir} holds no checkpoint_best.pt")
    info = trained_as(str(checkpoint))
    if info["task"] not in TASKS:
        sys.exit(f"error: {checkpoint}: task {info['task']} is not translation or sentence_prediction")
    # fairseq records the data path as given; the scripts give it relative to the repository root.
    data = args.data.resolve() if args.data else Path(info["data"])
    data = data if data.is_absolute() else ROOT / data
    if not data.is_dir():
        sys.exit(f"error: the data of {checkpoint} (pass --data) '{data}' is not a directory")
    name = ckpt_dir.resolve().name
    return Model(name, checkpoint, info["task"], info["arch"], data, args.out / name)


def sparsity(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"a sparsity is a fraction in (0, 1), got {text}")
    return value


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a positive integer, got {text}")
    return int(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ckpt_dirs", nargs="+", type=Path, metavar="CKPT_DIR",
                        help="a trained model's save dir (its checkpoint_best.pt)")
    parser.add_argument("--out", type=Path, default=ROOT / "checkpoints/compression_sweep")
    parser.add_argument("--data", type=Path, help="the data of every model (default: each one's training data)")
    parser.add_argument("--sparsities", nargs="+", type=sparsity, default=[0.3, 0.5, 0.7, 0.9])
    parser.add_argument("--bits", nargs="+", type=int, choices=BITS, default=[8, 6, 4])
    parser.add_argument("--finetune-updates", type=positive_int, default=300)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--csv", type=Path, default=ROOT / "docs/results/compression_sweep.csv")
    args = parser.parse_args()
    models = [read_model(d, args) for d in args.ckpt_dirs]  # every error before any work
    for model in models:
        print(f"[compression_sweep] {model.name} ({model.arch}, {model.task} on {model.data})", file=sys.stderr)
        sweep(model, args)
    run([sys.executable, ROOT / "scripts/lib/compression_plot.py", args.out, "--csv", args.csv,
         "--png", args.csv.with_suffix(".png")], stdout=None)


if __name__ == "__main__":
    main()
