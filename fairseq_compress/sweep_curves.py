"""Learning curves of a size sweep (``OUT/<arch>/curve.jsonl``, written by the
``*_timed`` tasks) drawn as Li et al. (2020) do: one line per model, validation
perplexity or BLEU against training time, updates or FLOPs."""
import csv
import json
import sys
from pathlib import Path

import numpy as np

from .plotting import pyplot

X_AXES = {"wall": ("train_seconds", "training time (s)"), "updates": ("updates", "updates"),
          "flops": ("flops", "training FLOPs (6 x params x tokens)")}
Y_AXES = {"ppl": "validation perplexity", "bleu": "validation BLEU", "loss": "validation loss (base 2)"}
HIGHER_IS_BETTER = {"ppl": False, "bleu": True, "loss": False}


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


def check_metric(runs, y):
    missing = [name for name, points in runs.items() if any(y not in p for p in points)]
    if missing:
        raise ValueError(f"--y {y}: not in the curves of {', '.join(missing)} (bleu needs --eval-bleu)")


def by_size(runs):
    return sorted(runs.items(), key=lambda item: item[1][0]["params"])


def crossover_seconds(small, large, y):
    """The training time from which `large` stays better than `small` on y until
    the shorter curve ends (both interpolated linearly in time), or None."""
    start = max(small[0]["train_seconds"], large[0]["train_seconds"])
    end = min(small[-1]["train_seconds"], large[-1]["train_seconds"])
    if end < start:
        return None
    times = sorted({p["train_seconds"] for p in small + large if start <= p["train_seconds"] <= end})
    curve = lambda points: np.interp(times, [p["train_seconds"] for p in points], [p[y] for p in points])  # noqa: E731
    sign = 1 if HIGHER_IS_BETTER[y] else -1
    ahead = sign * (curve(large) - curve(small)) > 0
    if not ahead[-1]:
        return None
    behind = np.flatnonzero(~ahead)
    return float(times[behind[-1] + 1] if len(behind) else times[0])


def summarize(sweep_dir, y, csv_path=None):
    """One row per run (size, speed, final and best y, the smaller runs it overtakes and
    when); printed as a markdown table and written to csv_path."""
    runs = by_size(read_runs(sweep_dir))
    check_metric(dict(runs), y)
    best = max if HIGHER_IS_BETTER[y] else min
    rows = []
    for index, (name, points) in enumerate(runs):
        last = points[-1]
        overtakes = []
        for smaller, smaller_points in runs[:index]:
            seconds = crossover_seconds(smaller_points, points, y)
            overtakes.append(f"{smaller} at {seconds:.0f} s" if seconds is not None else f"not {smaller}")
        rows.append({"run": name, "params": last["params"], "train_seconds": round(last["train_seconds"]),
                     "updates": last["updates"], "tokens_per_second": round(last["tokens"] / last["train_seconds"]),
                     f"final_{y}": round(last[y], 2), f"best_{y}": round(best(p[y] for p in points), 2),
                     "overtakes": "; ".join(overtakes) or "-"})
    if csv_path:
        Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
        with open(csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    header = list(rows[0])
    sys.stdout.write("| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n")
    for row in rows:
        sys.stdout.write("| " + " | ".join(f"{row[k]:,}" if isinstance(row[k], int) else str(row[k])
                                         for k in header) + " |\n")
    return rows


def plot_curves(sweep_dir, x, y, out):
    plt = pyplot()

    key, x_label = X_AXES[x]
    runs = read_runs(sweep_dir)
    check_metric(runs, y)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, points in by_size(runs):
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
