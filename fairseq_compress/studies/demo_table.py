"""The demo's result table (demo.py): a row per artifact (a fairseq checkpoint or a CTranslate2 directory):
test BLEU with its signature, MB on disk, sentences/s; printed as markdown, written as CSV, and plotted (BLEU
against MB and against sentences/s)."""
import json
import sys
from pathlib import Path
from typing import Dict, List

from ..plotting import pyplot
from .stages import write_csv

COLUMNS = ["artifact", "mb", "bleu", "sentences_per_s", "signature"]
Row = Dict[str, object]


def row(name: str, artifact: Path, bleu_json: Path) -> Row:
    """The artifact's row: its size (the deployed model: no optimizer state) and eval_bleu.sh --json's output."""
    bleu = json.loads(bleu_json.read_text())
    if "sentences_per_s" not in bleu:
        sys.exit(f"error: {bleu_json} has no sentences_per_s (an older eval_bleu.sh wrote it: delete it and rerun)")
    from ..compress.size import deployed_bytes

    return {"artifact": name, "mb": round(deployed_bytes(str(artifact)) / 1e6, 2), "bleu": bleu["bleu"],
            "sentences_per_s": bleu["sentences_per_s"], "signature": bleu["signature"]}


def markdown(rows: List[Row]) -> str:
    lines = ["| artifact | MB on disk | test BLEU | sentences/s (1 thread) |", "|---|---:|---:|---:|"]
    lines += [f"| {r['artifact']} | {r['mb']:.2f} | {r['bleu']:.2f} | {r['sentences_per_s']:.1f} |" for r in rows]
    return "\n".join(lines + [f"\nsacreBLEU signature: {rows[0]['signature']}"])


def write_table(rows: List[Row], path: Path) -> None:
    write_csv(path, [{column: r[column] for column in COLUMNS} for r in rows])


def plot(rows: List[Row], png: Path, title: str) -> None:
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for axis, column, label in ((axes[0], "mb", "MB on disk"), (axes[1], "sentences_per_s", "sentences/s (1 thread)")):
        for r in rows:
            axis.scatter(r[column], r["bleu"])
            axis.annotate(r["artifact"], (r[column], r["bleu"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
        axis.set_xlabel(label)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("test BLEU")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(png, dpi=120)
    plt.close(figure)
