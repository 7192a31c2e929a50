"""The demo's result table (scripts/demo.sh): rows, one JSON line per artifact (a fairseq checkpoint or a
CTranslate2 directory): test BLEU with its signature, MB on disk, sentences/s; printed as
markdown or CSV, and plotted (BLEU against MB and against sentences/s)."""
import argparse
import csv
import json
import sys
from pathlib import Path

from ..plotting import pyplot

COLUMNS = ["artifact", "mb", "bleu", "sentences_per_s", "signature"]


def read_rows(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def add_row(args):
    bleu = json.loads(args.bleu_json.read_text())
    if "sentences_per_s" not in bleu:
        sys.exit(f"error: --bleu-json {args.bleu_json} has no sentences_per_s (an older eval_bleu.sh wrote it: delete it and rerun)")
    from fairseq_compress.compress.size import deployed_bytes

    row = {"artifact": args.artifact_name, "mb": round(deployed_bytes(str(args.artifact)) / 1e6, 2), "bleu": bleu["bleu"],
           "sentences_per_s": bleu["sentences_per_s"], "signature": bleu["signature"]}
    rows = [r for r in read_rows(args.table) if r["artifact"] != args.artifact_name] + [row]
    with open(args.table, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def show(args):
    print("| artifact | MB on disk | test BLEU | sentences/s (1 thread) |")
    print("|---|---:|---:|---:|")
    rows = read_rows(args.table)
    for r in rows:
        print(f"| {r['artifact']} | {r['mb']:.2f} | {r['bleu']:.2f} | {r['sentences_per_s']:.1f} |")
    if rows:
        print(f"\nsacreBLEU signature: {rows[0]['signature']}")


def to_csv(args):
    writer = csv.DictWriter(sys.stdout, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(read_rows(args.table))


def plot(args):
    plt = pyplot()
    rows = read_rows(args.table)
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for axis, column, label in ((axes[0], "mb", "MB on disk"), (axes[1], "sentences_per_s", "sentences/s (1 thread)")):
        for r in rows:
            axis.scatter(r[column], r["bleu"])
            axis.annotate(r["artifact"], (r[column], r["bleu"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
        axis.set_xlabel(label)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("test BLEU")
    figure.suptitle(args.title)
    figure.tight_layout()
    figure.savefig(args.png, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="add or replace an artifact's row")
    add.add_argument("--table", required=True)
    add.add_argument("--artifact-name", required=True, help="the row's label")
    add.add_argument("--artifact", required=True, type=Path, help="the checkpoint or CTranslate2 directory")
    add.add_argument("--bleu-json", required=True, type=Path, help="output of scripts/eval_bleu.sh --json (BLEU and speed)")
    add.set_defaults(run=add_row)
    for name, run, help in (("show", show, "print the table as markdown"), ("csv", to_csv, "print the table as CSV")):
        command = commands.add_parser(name, help=help)
        command.add_argument("--table", required=True)
        command.set_defaults(run=run)
    plot_parser = commands.add_parser("plot", help="BLEU against MB and against sentences/s")
    plot_parser.add_argument("--table", required=True)
    plot_parser.add_argument("--png", required=True)
    plot_parser.add_argument("--title", default="")
    plot_parser.set_defaults(run=plot)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
