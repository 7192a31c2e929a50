"""Train Large, Then Compress (Li et al. 2020), the compression study (docs/pruning.md#the-compression-study):
does a larger model, compressed, beat a smaller one in the same memory?

Stages, in order, for each trained model of ``models`` (a save dir with checkpoint_best.pt; translation or
sentence classification), ``jobs`` models at a time; each stage's result file is its stamp, so a rerun
reuses what is done (OUT/<model>/, the layout of the earlier scripts/compression_sweep.py):
  1. the original (original.pt, a link to the checkpoint);
  2. quantized to each of ``bits`` (``fairseq-compress quantize``: int<bits>.pt);
  3. pruned one-shot to each of ``sparsities`` (``fairseq-compress prune``, fp16 nonzeros: oneshot_s<S>.pt);
  4. pruned gradually while fine-tuning ``gradual.updates`` updates (the ``*_pruning`` task, cubic schedule
     over the first 2/3, with scripts/train_mt.sh or finetune_cls.sh: gradual_s<S>/), then stored sparse
     (gradual_s<S>.pt);
  5. every file evaluated with the stock tools (scripts/eval_bleu.sh: test BLEU, beam 5; eval_cls.sh: test
     accuracy) into <file>.metric.json, and its row (size and metric) into <file>.result.json;
  6. the CSV of every OUT/*/*.result.json (model, params, method, sparsity, bits, MB on disk, metric, value),
     the plot of metric against MB, one line per original model, one panel per metric (the paper's
     Figure 1), and CSV_equal_memory.csv: for each smaller model, the best version of each larger one
     that fits in the smaller one's fp32 MB (printed).

    .venv/bin/python -m fairseq_compress.studies.compression_sweep [--config FILE] [key=value ...]

Recipes and budgets: configs/compression_sweep.yaml (configs/compression_sweep_smoke.yaml: the suite's toy run).
"""
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from omegaconf import MISSING

from ..checkpoint_info import trained_as
from ..compress.size import checkpoint_size
from ..modules.scalar_quantizer import BITS
from .stages import ROOT, in_parallel, make_once, number, run, run_once, write_csv
from .study_config import RESTORE, check_csv, load_config
from ..plotting import pyplot

TASKS = ("translation", "sentence_prediction")
METHODS = ("quantize", "oneshot", "gradual")
COLUMNS = ["model", "params", "method", "sparsity", "bits", "mb", "metric", "value"]


@dataclass
class TranslationFinetune:
    """scripts/train_mt.sh's options of the gradual pruning's fine-tuning of a translation model."""
    lr: float = MISSING
    warmup: int = MISSING
    max_tokens: int = MISSING


@dataclass
class ClassificationFinetune:
    """scripts/finetune_cls.sh's options of the gradual pruning's fine-tuning of a classifier."""
    lr: float = MISSING


@dataclass
class Gradual:
    updates: int = MISSING  # of fine-tuning, the sparsity reached at 2/3 of them
    mt: TranslationFinetune = field(default_factory=TranslationFinetune)
    cls: ClassificationFinetune = field(default_factory=ClassificationFinetune)


@dataclass
class StudyConfig:
    models: List[str] = MISSING  # save dirs of trained models (their checkpoint_best.pt)
    data: Optional[str] = None  # the data of every model; None: each one's training data
    out: str = MISSING
    csv: str = MISSING
    jobs: int = MISSING  # models at a time, one core each
    methods: List[str] = MISSING
    bits: List[int] = MISSING
    sparsities: List[float] = MISSING
    gradual: Gradual = field(default_factory=Gradual)


@dataclass(frozen=True)
class Model:
    name: str  # the save dir's name, the study's label for it
    checkpoint: Path
    task: str  # translation or sentence_prediction
    arch: str
    data: Path
    work: Path  # OUT/<name>: every file the study makes of this model


def check_config(config: StudyConfig) -> None:
    """Bad values stop the study before any work, with one line (the models: read_model)."""
    if not config.models or config.jobs < 1:
        sys.exit("error: models must name at least one save dir, jobs must be >= 1")
    for key, allowed in (("methods", METHODS), ("bits", BITS)):
        wrong = [value for value in config[key] if value not in allowed]
        if wrong:
            sys.exit(f"error: {key}: {wrong[0]} is not one of {', '.join(map(str, allowed))}")
    wrong = [value for value in config.sparsities if not 0 < value < 1]
    if wrong:
        sys.exit(f"error: sparsities: a sparsity is a fraction in (0, 1), got {wrong[0]}")
    if config.gradual.updates < 1:
        sys.exit(f"error: gradual.updates must be a positive integer, got {config.gradual.updates}")
    check_csv("csv", config.csv)


def read_model(save_dir: Path, config: StudyConfig, out: Path) -> Model:
    """What the save dir's checkpoint was trained as; a one-line error for what the study cannot take."""
    checkpoint = save_dir / "checkpoint_best.pt"
    if not checkpoint.is_file():
        sys.exit(f"error: models: {save_dir} holds no checkpoint_best.pt")
    info = trained_as(str(checkpoint))
    if info["task"] not in TASKS:
        sys.exit(f"error: {checkpoint}: task {info['task']} is not translation or sentence_prediction")
    # fairseq records the data path as given; the scripts give it relative to the repository root.
    data = Path(config.data).resolve() if config.data else Path(info["data"])
    data = data if data.is_absolute() else ROOT / data
    if not data.is_dir():
        sys.exit(f"error: the data of {checkpoint} (set data=DIR) '{data}' is not a directory")
    name = save_dir.resolve().name
    return Model(name, checkpoint, info["task"], info["arch"], data, out / name)


def evaluate(model: Model, file: Path, method: str, sparsity: float, bits: int) -> None:
    """FILE.result.json: one row of the study, its size and metric (each step once)."""
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


def gradual_finetune(model: Model, save: Path, sparsity: float, config: StudyConfig) -> list:
    """The command that fine-tunes `model` into `save` with the pruning task, the schedule over the first 2/3."""
    updates = config.gradual.updates
    prune = ["--prune-sparsity", sparsity, "--prune-schedule", "gradual", "--prune-start-update", 0,
             "--prune-end-update", updates * 2 // 3, "--prune-frequency", (updates + 9) // 10,
             "--restore-file", model.checkpoint.resolve(), *RESTORE]
    if model.task == "translation":
        mt = config.gradual.mt
        return ["bash", ROOT / "scripts/train_mt.sh", model.data, save, "--arch", model.arch, "--max-update", updates,
                "--lr", number(mt.lr), "--warmup", mt.warmup, "--max-tokens", mt.max_tokens,
                "--", "--task", "translation_pruning", *prune]
    return ["bash", ROOT / "scripts/finetune_cls.sh", model.data, save, "--arch", model.arch, "--max-update", updates,
            "--lr", number(config.gradual.cls.lr), "--", "--task", "sentence_prediction_pruning", *prune]


def compress(model: Model, config: StudyConfig) -> None:
    """Stages 1-5 of one model."""
    print(f"[compression_sweep] {model.name} ({model.arch}, {model.task} on {model.data})", file=sys.stderr)
    work = model.work
    work.mkdir(parents=True, exist_ok=True)
    # 1. the original
    original = work / "original.pt"
    if not original.exists():  # absent, or a link left dangling by a moved checkpoint: (re)link it
        original.unlink(missing_ok=True)
        original.symlink_to(model.checkpoint.resolve())
    evaluate(model, original, "original", 0, 32)
    ckpt = model.checkpoint
    # 2. quantized
    if "quantize" in config.methods:
        for bits in config.bits:
            out = work / f"int{bits}.pt"
            make_once(out, ["fairseq-compress", "quantize", "--path", ckpt, "--bits", bits, "--out", out])
            evaluate(model, out, "quantize", 0, bits)
    # 3. pruned one-shot
    if "oneshot" in config.methods:
        for sparsity in config.sparsities:
            out = work / f"oneshot_s{sparsity}.pt"
            make_once(out, ["fairseq-compress", "prune", "--path", ckpt, "--sparsity", sparsity, "--out", out])
            evaluate(model, out, "oneshot", sparsity, 16)
    # 4. pruned gradually while fine-tuning, then stored sparse
    if "gradual" in config.methods:
        for sparsity in config.sparsities:
            out, save = work / f"gradual_s{sparsity}.pt", work / f"gradual_s{sparsity}"
            if not out.exists():
                run(gradual_finetune(model, save, sparsity, config))
                run(["fairseq-compress", "prune", "--path", save / "checkpoint_last.pt", "--sparsity", sparsity,
                     "--out", out])
            evaluate(model, out, "gradual", sparsity, 16)


def best_per_size(rows: list) -> list:
    """The points no other point of the same model beats with fewer MB."""
    frontier, best = [], float("-inf")
    for row in sorted(rows, key=lambda r: (r["mb"], -r["value"])):
        if row["value"] > best:
            frontier.append(row)
            best = row["value"]
    return frontier


def equal_memory(rows: list) -> list:
    """Per (smaller, larger) model pair with the same metric: does the larger one,
    compressed into no more MB than the smaller one's original, score higher?"""
    originals = sorted((r for r in rows if r["method"] == "original"), key=lambda r: r["params"])
    pairs = []
    for small in originals:
        for large in originals:
            if large["params"] <= small["params"] or large["metric"] != small["metric"]:
                continue
            fits = [r for r in rows if r["model"] == large["model"] and r["mb"] <= small["mb"]]
            best = max(fits, key=lambda r: r["value"], default=None)
            pairs.append({
                "smaller": small["model"], "smaller_mb": small["mb"], "metric": small["metric"],
                "smaller_value": small["value"], "larger": large["model"],
                "larger_compressed": version(best) if best else "none fits",
                "larger_mb": best["mb"] if best else "", "larger_value": best["value"] if best else "",
                "larger_wins": bool(best) and best["value"] > small["value"]})
    return pairs


def version(row: dict) -> str:
    """e.g. 'gradual 70% fp16' or 'quantize int4' (never an original: a larger model's fp32 MB never fit)."""
    if row["method"] == "quantize":
        return f"quantize int{row['bits']}"
    return f"{row['method']} {row['sparsity']:.0%} fp{row['bits']}"


def plot_panel(rows: list, axis, metric: str) -> None:
    markers = {"original": "*", "quantize": "s", "oneshot": "v", "gradual": "o"}
    for model in dict.fromkeys(r["model"] for r in rows):
        model_rows = [r for r in rows if r["model"] == model]
        frontier = best_per_size(model_rows)
        line, = axis.plot([r["mb"] for r in frontier], [r["value"] for r in frontier],
                          label=f"{model} ({model_rows[0]['params'] / 1e6:.1f}M params)")
        for method, marker in markers.items():
            points = [r for r in model_rows if r["method"] == method]
            axis.scatter([r["mb"] for r in points], [r["value"] for r in points], marker=marker,
                         color=line.get_color(), s=22, alpha=0.7)
    axis.set_xscale("log")
    axis.set_xlabel("MB on disk (original: fp32 weights)")
    axis.set_ylabel(metric)
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3, which="both")


def plot(rows: list, png: Path) -> None:
    plt = pyplot()

    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    figure, axes = plt.subplots(1, len(metrics), figsize=(7 * len(metrics), 4.5), squeeze=False)
    for metric, axis in zip(metrics, axes[0]):
        plot_panel([r for r in rows if r["metric"] == metric], axis, metric)
    figure.suptitle("Accuracy vs memory: markers ★ original, ■ quantized, ▼ one-shot, ● gradual pruning",
                    fontsize=9)
    figure.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, dpi=120)
    plt.close(figure)


def write_results(out: Path, csv: Path) -> list:
    """Stage 6: the CSV of every OUT/*/*.result.json, its plot (CSV.png) and the equal-memory comparison
    (CSV_equal_memory.csv, printed); the rows."""
    rows = [json.loads(p.read_text()) for p in sorted(out.glob("*/*.result.json"))]
    if not rows:
        sys.exit(f"error: no */*.result.json under {out}")
    rows.sort(key=lambda r: (r["params"], r["method"], r["sparsity"], -r["bits"]))
    write_csv(csv, [{c: r[c] for c in COLUMNS} for r in rows])
    plot(rows, csv.with_suffix(".png"))
    pairs = equal_memory(rows)
    equal_csv = csv.with_name(f"{csv.stem}_equal_memory.csv")
    if pairs:
        write_csv(equal_csv, pairs)
    for p in pairs:
        verdict = "larger wins" if p["larger_wins"] else "smaller wins"
        print(f"{p['smaller']} fp32 ({p['smaller_mb']} MB): {p['metric']} {p['smaller_value']} | {p['larger']} "
              f"{p['larger_compressed']} ({p['larger_mb']} MB): {p['larger_value']} -> {verdict}")
    print(f"wrote {csv} ({len(rows)} rows), {csv.with_suffix('.png')}" + (f" and {equal_csv}" if pairs else ""))
    return rows


def main(argv: Optional[List[str]] = None) -> None:
    config = load_config(StudyConfig, "compression_sweep", __doc__, argv,
                         "models=[checkpoints/sweep_mt/transformer_l3_h256] methods=[quantize]")
    check_config(config)
    os.environ["OMP_NUM_THREADS"] = "1"  # every step on one core
    out = Path(config.out).resolve()  # the pipelines' stamps hold it absolute, as the earlier script gave it
    models = [read_model(Path(save_dir), config, out) for save_dir in config.models]  # every error before any work
    names = [model.name for model in models]
    if len(set(names)) < len(names):
        sys.exit(f"error: models: two save dirs of the same name ({', '.join(names)}) would share OUT/<name>")

    # 1-5. every model compressed and evaluated, `jobs` models at a time on one core each
    out.mkdir(parents=True, exist_ok=True)
    in_parallel([lambda m=model: compress(m, config) for model in models], config.jobs)

    # 6. the CSV, the plot and the comparison at equal memory
    write_results(out, Path(config.csv))


if __name__ == "__main__":
    main()
