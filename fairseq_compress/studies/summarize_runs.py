"""Mean +- std of metrics over seeds.

Each group is NAME=DIR, where DIR holds seed<N>/<metric file> (JSON; several files' keys are
merged) and, optionally, group.json: extra columns for the table (e.g. pretraining figures).
Writes one CSV row per run and prints a markdown table with one row per group.
"""
import argparse
import csv
import json
import statistics
from pathlib import Path


def collect(name, directory, metric_files, metrics):
    rows = []
    for path in sorted(Path(directory).glob(f"seed*/{metric_files[0]}"), key=lambda p: int(p.parent.name[4:])):
        values = {}
        for metric_file in metric_files:
            values.update(json.loads((path.parent / metric_file).read_text()))
        rows.append({"config": name, "seed": int(path.parent.name[4:]), **{m: values[m] for m in metrics}})
    return rows


def mean_std(values):
    if len(values) == 1:
        return f"{values[0]:.2f}"
    std = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.mean(values):.2f} ± {std:.2f}"


def parse_group(text):
    name, sep, directory = text.partition("=")
    if not sep or not name or not directory:
        raise argparse.ArgumentTypeError(f"a group is NAME=DIR, got '{text}'")
    return name, Path(directory)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("groups", nargs="+", type=parse_group, metavar="NAME=DIR")
    parser.add_argument("--metric", nargs="+", default=["bleu"], help="keys of the metric file")
    parser.add_argument("--metric-file", nargs="+", default=["bleu.json"], help="JSON files of each seed directory")
    parser.add_argument("--csv", help="write the per-run rows here")
    parser.add_argument("--best", choices=("max", "min"),
                        help="print only the name of the group whose mean of the first --metric is the max / min")
    args = parser.parse_args(argv)
    if not (args.csv or args.best):
        parser.error("give --csv or --best")
    rows = [row for name, directory in args.groups for row in collect(name, directory, args.metric_file, args.metric)]
    if not rows:
        raise SystemExit(f"error: no seed*/{args.metric_file[0]} found under {', '.join(str(d) for _, d in args.groups)}")
    if args.best:
        means = {name: statistics.mean(r[args.metric[0]] for r in rows if r["config"] == name)
                 for name, _ in args.groups if any(r["config"] == name for r in rows)}
        print((max if args.best == "max" else min)(means, key=means.get))
        return
    Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
    with open(args.csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["config", "seed", *args.metric])
        writer.writeheader()
        writer.writerows(rows)

    extras = {name: json.loads((d / "group.json").read_text()) if (d / "group.json").exists() else {}
              for name, d in args.groups}
    extra_columns = list(dict.fromkeys(k for columns in extras.values() for k in columns))
    header = ["config", *extra_columns, "seeds", *(f"{m} mean ± std" for m in args.metric), f"{args.metric[0]} per seed"]
    print("| " + " | ".join(header) + " |")
    print("|---|" + "---:|" * (len(header) - 2) + "---|")
    for name, _ in args.groups:
        group_rows = [r for r in rows if r["config"] == name]
        if not group_rows:
            continue
        cells = [name, *(str(extras[name].get(c, "")) for c in extra_columns), str(len(group_rows)),
                 *(mean_std([r[m] for r in group_rows]) for m in args.metric),
                 ", ".join(f"{r[args.metric[0]]:.2f}" for r in group_rows)]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
