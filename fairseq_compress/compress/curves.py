"""Learning curves of a size sweep (``OUT/<arch>/curve.jsonl``, written by the
``*_timed`` tasks) drawn as Li et al. (2020) do: one line per model, validation
perplexity or BLEU against training time, updates or FLOPs."""
import json
import logging
from pathlib import Path

X_AXES = {"wall": ("train_seconds", "training time (s)"), "updates": ("updates", "updates"),
          "flops": ("flops", "training FLOPs (6 x params x tokens)")}
Y_AXES = {"ppl": "validation perplexity", "bleu": "validation BLEU", "loss": "validation loss (base 2)"}


def read_runs(sweep_dir):
    """{run name: points} for every SWEEP_DIR/<run>/curve.jsonl."""
    runs = {}
    for path in sorted(Path(sweep_dir).glob("*/curve.jsonl")):
        points = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if points:
            runs[path.parent.name] = points
    if not runs:
        raise ValueError(f"{sweep_dir} holds no <run>/curve.jsonl with points; train with --task *_timed")
    return runs


def plot_curves(sweep_dir, x, y, out):
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # fairseq's import sets the root logger to DEBUG
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key, x_label = X_AXES[x]
    runs = read_runs(sweep_dir)
    missing = [name for name, points in runs.items() if any(y not in p for p in points)]
    if missing:
        raise ValueError(f"--y {y}: not in the curves of {', '.join(missing)} (bleu needs --eval-bleu)")
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, points in sorted(runs.items(), key=lambda item: item[1][0]["params"]):
        ax.plot([p[key] for p in points], [p[y] for p in points], marker="o", markersize=3,
                label=f"{name} ({points[0]['params'] / 1e6:.1f}M params)")
    if x != "updates":
        ax.set_xscale("log")
    if y == "ppl":
        ax.set_yscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel(Y_AXES[y])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return [line.get_label() for line in ax.get_lines()]
