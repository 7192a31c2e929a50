"""The tables and plots of scripts/structured_study.sh, from the files it leaves under OUT:
<metric>/<contender>.json and speed.json (stage 2), models/<config>/seed<N>/heads_keep*.json
(stage 3); the metric is BLEU (--task mt) or accuracy (--task cls). Writes
RESULTS/<prefix>_speed.{csv,png} (the metric against sentences/s, every compression method),
<prefix>_heads.{csv,png} (the metric lost against heads removed, with and without DropHead) and
<prefix>_equal_speed.csv (per precision, the best compressed large model at least as fast as the
small one, against it), prefix structured (mt) or structured_cls, and prints the tables."""
import argparse
import csv
import json
import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from fairseq_compress.compress.size import deployed_bytes  # noqa: E402

# contender name -> (family, fraction removed); "heads_ffn50" is heads and FFN at 50 %
NAME = re.compile(r"^(?P<family>[a-z_]+?)(?P<percent>\d+)?(?P<int8>_int8)?$")
FAMILIES = {"dense": "dense", "dense_ft": "dense, fine-tuned as long", "heads": "heads", "ffn": "FFN neurons", "layers": "layers", "heads_ffn": "heads + FFN",
            "heads_ffn_layers": "heads + FFN + layers", "weights": "weights (unstructured)", "ipq": "iPQ",
            "small": "small model"}
CONFIGS = {"none": "no DropHead", "v_p0.1": "DropHead p=0.1 (V)", "v_p0.2": "DropHead p=0.2 (V)"}


@dataclass(frozen=True)
class Task:
    metric: str  # the key of every score JSON, and its directory under OUT
    label: str
    prefix: str  # of the result files
    speed: str  # what sentences/s measures


TASKS = {"mt": Task("bleu", "BLEU", "structured", "fairseq-generate sentences/s, one thread (beam 5)"),
         "cls": Task("accuracy", "accuracy (%)", "structured_cls", "classifier sentences/s, one thread (fairseq-validate)")}


def write_csv(path: Path, rows: List[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def markdown(rows: List[dict]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(row[k]) for k in header) + " |" for row in rows]
    return "\n".join(lines)


def speed_rows(out: Path, contenders: List[str], metric: str) -> List[dict]:
    speed = json.loads((out / "speed.json").read_text())
    dense = speed["dense"]
    rows = []
    for contender in contenders:
        name, _, rest = contender.partition("=")
        ckpt, _, precision = rest.rpartition(":")
        match = NAME.match(name)
        rows.append({
            "contender": name, "method": FAMILIES[match["family"]], "removed": int(match["percent"] or 0) / 100,
            "precision": precision, metric: json.loads((out / metric / f"{name}.json").read_text())[metric],
            "mb": round(deployed_bytes(ckpt) / 1e6, 2),
            **speed[name],
            "speedup_1": round(speed[name]["sent_s_1"] / dense["sent_s_1"], 2),
            "speedup_2": round(speed[name]["sent_s_2"] / dense["sent_s_2"], 2),
        })
    # The fine-tuned contenders trained FINETUNE updates more than dense: dense_ft is their reference.
    by_name = {row["contender"]: row for row in rows}
    reference = by_name.get("dense_ft", by_name["dense"])
    for row in rows:
        row[f"{metric}_lost"] = round(reference[metric] - row[metric], 2)
    return rows


def plot_speed(rows: List[dict], png: Path, arch: str, task: Task) -> None:
    # One colour per method (the ten families fit matplotlib's ten-colour cycle), one marker per precision.
    fig, ax = plt.subplots(figsize=(8, 5.5))
    markers = {"fp32": "o", "int8": "s"}
    for index, method in enumerate(dict.fromkeys(row["method"] for row in rows)):
        points = [r for r in rows if r["method"] == method]
        for precision, marker in markers.items():
            mine = [r for r in points if r["precision"] == precision]
            ax.scatter([r["sent_s_1"] for r in mine], [r[task.metric] for r in mine], marker=marker, color=f"C{index}",
                       label=method if precision == points[0]["precision"] else None)
        for r in points:
            ax.annotate(r["contender"].replace("_int8", ""), (r["sent_s_1"], r[task.metric]), fontsize=6)
    for precision, marker in markers.items():
        ax.scatter([], [], marker=marker, color="black", label=precision)
    ax.set_xlabel(task.speed)
    ax.set_ylabel(f"test {task.label}")
    ax.set_title(f"{arch}: compression methods, {task.label} against speed")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(png, dpi=120)


def heads_rows(out: Path, metric: str) -> List[dict]:
    rows = []
    for config in CONFIGS:
        for run in sorted((out / "models" / config).glob("seed*")):
            original = json.loads((run / "heads_keep1.0.json").read_text())[metric]
            for keep in (0.75, 0.5, 0.25):
                for finetuned, suffix in ((False, ""), (True, "_ft")):
                    value = json.loads((run / f"heads_keep{keep}{suffix}.json").read_text())[metric]
                    rows.append({"config": config, "seed": int(run.name[4:]), "heads_removed": 1 - keep,
                                 "finetuned": finetuned, f"{metric}_original": original, metric: value,
                                 f"{metric}_lost": round(original - value, 2)})
    return rows


def mean_std(values: List[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def heads_table(rows: List[dict], task: Task) -> List[dict]:
    table = []
    for config, label in CONFIGS.items():
        mine = [r for r in rows if r["config"] == config]
        entry = {"model": label, task.label: mean_std([r[f"{task.metric}_original"] for r in mine
                                                       if r["heads_removed"] == 0.25 and not r["finetuned"]])}
        for removed in (0.25, 0.5, 0.75):
            for finetuned in (False, True):
                lost = [r[f"{task.metric}_lost"] for r in mine if r["heads_removed"] == removed and r["finetuned"] == finetuned]
                entry[f"lost at {removed:.0%}{' + ft' if finetuned else ''}"] = mean_std(lost)
        table.append(entry)
    return table


def plot_heads(rows: List[dict], png: Path, arch: str, task: Task) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for config, label in CONFIGS.items():
        for finetuned, style in ((False, "--"), (True, "-")):
            xs = [0.25, 0.5, 0.75]
            ys = [statistics.mean(r[f"{task.metric}_lost"] for r in rows if r["config"] == config and r["heads_removed"] == x
                                  and r["finetuned"] == finetuned) for x in xs]
            ax.plot([100 * x for x in xs], ys, style, marker="o",
                    label=f"{label}{', fine-tuned' if finetuned else ', no fine-tuning'}")
    ax.set_xlabel("% of the heads of every attention module removed")
    ax.set_ylabel(f"{task.label} lost (mean over seeds)")
    ax.set_title(f"{arch}: does DropHead make heads removable?")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=120)


def equal_speed(rows: List[dict], metric: str) -> List[dict]:
    """Per precision: the small model against the best compressed large model in that precision at least as fast."""
    table = []
    for precision in ("fp32", "int8"):
        small = [r for r in rows if r["method"] == "small model" and r["precision"] == precision]
        if not small:
            continue
        small = small[0]
        faster = [r for r in rows if r["method"] != "small model" and r["precision"] == precision
                  and r["sent_s_1"] >= small["sent_s_1"]]
        best = max(faster, key=lambda r: r[metric]) if faster else None
        table.append({"precision": precision, f"small_{metric}": small[metric], "small_sent_s_1": small["sent_s_1"],
                      "large_compressed": best["contender"] if best else "none as fast",
                      f"large_{metric}": best[metric] if best else "", "large_sent_s_1": best["sent_s_1"] if best else "",
                      f"{metric}_gain": round(best[metric] - small[metric], 2) if best else ""})
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--results", required=True, type=Path)
    parser.add_argument("--task", choices=sorted(TASKS), default="mt")
    parser.add_argument("--arch", required=True)
    parser.add_argument("--small-arch", required=True)
    parser.add_argument("--contenders", required=True, nargs="+")
    args = parser.parse_args()
    task = TASKS[args.task]
    args.results.mkdir(parents=True, exist_ok=True)
    result = args.results / task.prefix
    speed = speed_rows(args.out, args.contenders, task.metric)
    write_csv(Path(f"{result}_speed.csv"), speed)
    plot_speed(speed, Path(f"{result}_speed.png"), args.arch, task)
    heads = heads_rows(args.out, task.metric)
    write_csv(Path(f"{result}_heads.csv"), heads)
    plot_heads(heads, Path(f"{result}_heads.png"), args.arch, task)
    equal = equal_speed(speed, task.metric)
    write_csv(Path(f"{result}_equal_speed.csv"), equal)
    print(f"Speed and {task.label} of {args.arch} compressed (fine-tuned), against dense fp32:\n{markdown(speed)}\n")
    print(f"{task.label} lost when heads are removed (mean ± std over seeds):\n{markdown(heads_table(heads, task))}\n")
    print(f"Equal speed: {args.small_arch} against the best compressed {args.arch} at least as fast:\n"
          f"{markdown(equal)}")

if __name__ == "__main__":
    main()
