"""Mean +- std of a metric over seeds: reads RUNS/<config>/seed<N>/<metric file>.json,
writes one CSV row per run and prints a markdown table per config."""
import argparse
import csv
import json
import statistics
from pathlib import Path


def collect(runs_dir, metric_file, metric):
    rows = []
    for path in sorted(Path(runs_dir).glob(f"*/seed*/{metric_file}")):
        config, seed = path.parent.parent.name, int(path.parent.name.removeprefix("seed"))
        rows.append({"config": config, "seed": seed, metric: json.loads(path.read_text())[metric]})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs_dir")
    parser.add_argument("--metric", default="bleu")
    parser.add_argument("--metric-file", default="bleu.json")
    parser.add_argument("--configs", nargs="+", help="table order (default: sorted)")
    parser.add_argument("--csv", required=True, help="write the per-run rows here")
    args = parser.parse_args()
    rows = collect(args.runs_dir, args.metric_file, args.metric)
    if not rows:
        raise SystemExit(f"error: no {args.runs_dir}/*/seed*/{args.metric_file} found")
    Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
    with open(args.csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["config", "seed", args.metric])
        writer.writeheader()
        writer.writerows(rows)
    configs = args.configs or sorted({r["config"] for r in rows})
    print(f"| config | seeds | {args.metric} mean ± std | per seed |")
    print("|---|---:|---:|---|")
    for config in configs:
        values = [r[args.metric] for r in rows if r["config"] == config]
        if not values:
            continue
        std = statistics.stdev(values) if len(values) > 1 else float("nan")
        print(f"| {config} | {len(values)} | {statistics.mean(values):.2f} ± {std:.2f} | "
              f"{', '.join(f'{v:.2f}' for v in values)} |")


if __name__ == "__main__":
    main()
