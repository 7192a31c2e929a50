"""Validation curves of groups of runs (CONFIG=DIR, each DIR/seed*/train.log, fairseq-train's
--log-format json): per run the best valid loss, the update it came at and how far the last
valid loss rose above it (overfitting); a CSV of every point and a PNG of the mean valid loss
per config against updates. With --run DIR, only the summary of DIR/train.log, as JSON."""
import argparse
import csv
import json
import statistics
import sys
from pathlib import Path
from typing import List, Tuple

from fairseq_compress.studies.fairseq_log import records


def valid_points(log_path) -> List[Tuple[int, float]]:
    """[(num_updates, valid loss)] of a train.log, one per validation (the last one of an update wins)."""
    points = {int(r["num_updates"]): r["loss"] for r in records(Path(log_path).read_text(encoding="utf-8"), "valid")}
    return sorted(points.items())


def run_summary(points):
    update, loss = min(points, key=lambda p: p[1])
    return {"best_valid_loss": loss, "best_update": update, "valid_loss_rise": round(points[-1][1] - loss, 3)}


def groups_of(specs):
    groups = {}
    for spec in specs:
        config, _, directory = spec.partition("=")
        logs = sorted(Path(directory).glob("seed*/train.log"))
        if not config or not logs:
            sys.exit(f"error: {spec}: give CONFIG=DIR with DIR/seed*/train.log")
        groups[config] = {log.parent.name: valid_points(log) for log in logs}
        empty = [seed for seed, points in groups[config].items() if not points]
        if empty:
            sys.exit(f"error: {directory}/{empty[0]}/train.log has no 'valid' record of --log-format json")
    return groups


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("groups", nargs="*", metavar="CONFIG=DIR")
    parser.add_argument("--run", metavar="DIR", help="only the summary of DIR/train.log, as JSON")
    parser.add_argument("--csv", help="every (config, seed, num_updates, valid_loss)")
    parser.add_argument("--png", help="mean valid loss per config against updates")
    args = parser.parse_args()
    if args.run:
        points = valid_points(Path(args.run) / "train.log")
        if not points:
            sys.exit(f"error: {args.run}/train.log has no 'valid' record of --log-format json")
        print(json.dumps(run_summary(points)))
        return
    if not args.groups:
        parser.error("give CONFIG=DIR groups, or --run DIR")
    groups = groups_of(args.groups)
    summaries = {config: {seed: run_summary(points) for seed, points in runs.items()} for config, runs in groups.items()}
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["config", "seed", "num_updates", "valid_loss"])
            for config, runs in groups.items():
                for seed, points in runs.items():
                    writer.writerows([config, seed, update, loss] for update, loss in points)
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        for config, runs in groups.items():
            updates = sorted(set.intersection(*(set(u for u, _ in points) for points in runs.values())))
            by_seed = [dict(points) for points in runs.values()]
            ax.plot(updates, [statistics.mean(points[u] for points in by_seed) for u in updates],
                    label=f"{config} ({len(runs)} seeds)")
        ax.set(xlabel="updates", ylabel="valid loss (label-smoothed, base 2)", title="Validation loss")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.png, dpi=120)
    for config, runs in summaries.items():
        for seed, summary in runs.items():
            print(json.dumps({"config": config, "seed": seed, **summary}))


if __name__ == "__main__":
    main()
