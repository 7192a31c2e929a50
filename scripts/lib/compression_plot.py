"""Collect the compression sweep's OUT/<model>/*.result.json into a CSV, plot
metric vs MB on disk, one line per original model (the upper envelope of its
compressed versions), as in Li et al. (2020), Figure 1, one panel per metric,
and compare at equal memory: for each smaller model, the best compressed
version of each larger model (same metric) that fits in the smaller one's fp32
MB. Writes CSV, PNG and CSV_equal_memory.csv; prints the comparison."""
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


def equal_memory(rows):
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
                "larger_compressed": describe(best) if best else "none fits",
                "larger_mb": best["mb"] if best else "", "larger_value": best["value"] if best else "",
                "larger_wins": bool(best) and best["value"] > small["value"]})
    return pairs


def describe(row):
    """e.g. 'gradual 70% fp16' or 'quantize int4' (never an original: a larger model's fp32 MB never fit)."""
    if row["method"] == "quantize":
        return f"quantize int{row['bits']}"
    return f"{row['method']} {row['sparsity']:.0%} fp{row['bits']}"


def plot(rows, axis, metric):
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


def write_csv(path, columns, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows({c: r[c] for c in columns} for r in rows)


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
    write_csv(args.csv, COLUMNS, rows)

    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    figure, axes = plt.subplots(1, len(metrics), figsize=(7 * len(metrics), 4.5), squeeze=False)
    for metric, axis in zip(metrics, axes[0]):
        plot([r for r in rows if r["metric"] == metric], axis, metric)
    figure.suptitle("Accuracy vs memory: markers ★ original, ■ quantized, ▼ one-shot, ● gradual pruning",
                    fontsize=9)
    figure.tight_layout()
    args.png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.png, dpi=120)
    pairs = equal_memory(rows)
    equal_csv = args.csv.with_name(f"{args.csv.stem}_equal_memory.csv")
    if pairs:
        write_csv(equal_csv, list(pairs[0]), pairs)
    for p in pairs:
        verdict = "larger wins" if p["larger_wins"] else "smaller wins"
        print(f"{p['smaller']} fp32 ({p['smaller_mb']} MB): {p['metric']} {p['smaller_value']} | {p['larger']} "
              f"{p['larger_compressed']} ({p['larger_mb']} MB): {p['larger_value']} -> {verdict}")
    print(f"wrote {args.csv} ({len(rows)} rows), {args.png}" + (f" and {equal_csv}" if pairs else ""))


if __name__ == "__main__":
    main()
