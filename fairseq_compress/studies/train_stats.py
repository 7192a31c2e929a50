"""The last end-of-epoch 'train' statistics of a fairseq-train log (--log-format json) as
JSON, e.g. {"num_updates": 2500, "wps": 4330.8, ...}; with --columns, the pretraining columns
of a results table instead; with --field NAME, one value; with --seconds-per-update, the
training seconds per update (fairseq's train_wall: validation, saving and start-up left out)
after the log's first 'train_inner' record."""
import argparse
import json
import sys
from typing import Dict, List, Optional

from .fairseq_log import records

Stats = Dict[str, float]


def last_train_stats(log_text: str) -> Optional[Stats]:
    """The numbers of the last end-of-epoch record."""
    epochs = records(log_text, "train")
    return {k: v for k, v in epochs[-1].items() if isinstance(v, float)} if epochs else None


def inner_points(log_text: str) -> List[Stats]:
    """Every 'train_inner' record that has num_updates."""
    return [p for p in records(log_text, "train_inner") if "num_updates" in p]


def seconds_per_update(log_text: str) -> Optional[float]:
    points = [p for p in inner_points(log_text) if "train_wall" in p]
    if len(points) < 2:
        return None
    first, last = points[0], points[-1]
    # train_wall is each logging interval's own training time; the first holds the start-up
    return wall_per_update([p["train_wall"] for p in points[1:]], last["num_updates"] - first["num_updates"])


def wall_per_update(train_walls: List[float], updates: int) -> float:
    """Seconds per update from fairseq's train_wall values, which it prints in whole seconds: records that all
    print 0 took under a second together, so 1 s bounds their time, not 0 (a budget divides by the rate)."""
    return max(sum(train_walls), 1) / updates


def pretraining_columns(stats: Stats) -> dict:
    """A results table's pretraining columns from the last end-of-epoch statistics."""
    return {"pretraining updates": int(stats["num_updates"]), "tokens/s": round(stats["wps"])}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("log")
    parser.add_argument("--columns", action="store_true")
    parser.add_argument("--field", help="print this statistic alone (integers without a decimal point)")
    parser.add_argument("--seconds-per-update", action="store_true")
    args = parser.parse_args()
    with open(args.log, encoding="utf-8") as f:
        text = f.read()
    if args.seconds_per_update:
        rate = seconds_per_update(text)
        if rate is None:
            sys.exit(f"error: {args.log} has fewer than two 'train_inner' records of --log-format json (lower --log-interval)")
        print(f"{rate:.4f}")
        return
    stats = last_train_stats(text)
    if stats is None:
        sys.exit(f"error: {args.log} has no end-of-epoch 'train' record of --log-format json (did the run finish?)")
    if args.field:
        if args.field not in stats:
            sys.exit(f"error: --field {args.field} is not in the train statistics of {args.log} ({', '.join(stats)})")
        value = stats[args.field]
        print(int(value) if value.is_integer() else value)
        return
    if args.columns:
        stats = pretraining_columns(stats)
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
