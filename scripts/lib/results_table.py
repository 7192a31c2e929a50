"""Rows of the demo's result table: one JSON line per model, printed as markdown."""
import argparse
import csv
import json
import sys


def add_row(args):
    size = json.load(open(args.size_json))
    bleu = json.load(open(args.bleu_json))
    row = {
        "model": args.model,
        "params": size["model_params"],
        "model_mb": round(size["model_bytes"] / 1e6, 2),
        "file_mb": round(size["file_bytes"] / 1e6, 2),
        "bleu": bleu["bleu"],
        "signature": bleu["signature"],
    }
    rows = [r for r in read_rows(args.table) if r["model"] != args.model] + [row]
    with open(args.table, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def read_rows(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def show(args):
    print("| model | params | MB (fp32 weights) | MB on disk (checkpoint) | test BLEU | sacreBLEU signature |")
    print("|---|---:|---:|---:|---:|---|")
    for r in read_rows(args.table):
        signature = r["signature"].replace("|", "\\|")  # a literal | inside a markdown cell
        print(f"| {r['model']} | {r['params']:,} | {r['model_mb']:.2f} | {r['file_mb']:.2f} | {r['bleu']:.2f} | {signature} |")


def to_csv(args):
    rows = read_rows(args.table)
    writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["model"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="add or replace a model's row")
    add.add_argument("--table", required=True)
    add.add_argument("--model", required=True)
    add.add_argument("--size-json", required=True, help="output of fairseq-compress size --json")
    add.add_argument("--bleu-json", required=True, help="output of scripts/eval_bleu.sh --json")
    add.set_defaults(run=add_row)
    show_parser = commands.add_parser("show", help="print the table as markdown")
    show_parser.add_argument("--table", required=True)
    show_parser.set_defaults(run=show)
    csv_parser = commands.add_parser("csv", help="print the table as CSV")
    csv_parser.add_argument("--table", required=True)
    csv_parser.set_defaults(run=to_csv)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
