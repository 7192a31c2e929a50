"""Plot the Quant-Noise study's CSV (one row per config and seed): test BLEU of the fp32, iPQ,
iPQ + --distill and int8 models for each noise config, mean over seeds with the std as an
error bar (none with one seed), so the fp32 cost of the noise and the iPQ drop it saves read
off one figure."""
import argparse
import csv
import statistics
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MODELS = {"bleu_fp32": "fp32", "bleu_ipq": "iPQ", "bleu_ipq_distill": "iPQ + distill", "bleu_int8": "int8"}


def read_by_config(path: Path) -> dict[str, list[dict[str, float]]]:
    """Rows grouped by config, in the CSV's order."""
    by_config: dict[str, list[dict[str, float]]] = defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            by_config[row["config"]].append({m: float(row[m]) for m in MODELS})
    if not by_config:
        raise SystemExit(f"error: {path} has no rows")
    return by_config


def plot(by_config: dict[str, list[dict[str, float]]], out: Path) -> None:
    width = 0.8 / len(MODELS)
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (metric, label) in enumerate(MODELS.items()):
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


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("csv", type=Path)
    parser.add_argument("png", type=Path)
    args = parser.parse_args()
    plot(read_by_config(args.csv), args.png)


if __name__ == "__main__":
    main()
