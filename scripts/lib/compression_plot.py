"""Collect the compression sweep's OUT/<model>/*.result.json into a CSV and
plot metric vs MB on disk, one line per original model (the upper envelope of
its compressed versions), as in Li et al. (2020), Figure 1."""
import argparse
import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLUMNS = ["model", "params", "method", "sparsity", "bits", "mb", "metric", "value"]


def best_per_size(rows):
    """The points no other point of the same model beats with fewer MB."""
    frontier, best = [], float("-inf")
    for row in sorted(rows, key=lambda r: (r["mb"], -r["value"])):
        if row["value"] > best:
            frontier.append(row)
            best = row["value"]
    return frontier


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, help="the sweep's --out directory")
    parser.add_argument("--csv", required=True, type=Path)
    parser.add_argument("--png", required=True, type=Path)
    args = parser.parse_args()
    rows = [json.loads(p.read_text()) for p in sorted(args.out.glob("*/*.result.json"))]
    if not rows:
        raise SystemExit(f"error: no */*.result.json under {args.out}")
    rows.sort(key=lambda r: (r["params"], r["method"], r["sparsity"], -r["bits"]))
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with open(args.csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({c: r[c] for c in COLUMNS} for r in rows)

    figure, axis = plt.subplots(figsize=(7, 4.5))
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
    axis.set_ylabel(rows[0]["metric"])
    axis.set_title("Accuracy vs memory: markers ★ original, ■ quantized, ▼ one-shot, ● gradual pruning",
                   fontsize=9)
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3, which="both")
    figure.tight_layout()
    args.png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.png, dpi=120)
    print(f"wrote {args.csv} ({len(rows)} rows) and {args.png}")


if __name__ == "__main__":
    main()
