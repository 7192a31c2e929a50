"""The tables and plots of the structured study (structured.py), from the files it leaves under OUT:
<metric>/<contender>.json and speed.json (stage 2), models/<config>/seed<N>/heads_keep*.json
(stage 3); the metric is BLEU (task mt) or accuracy (task cls). Writes
RESULTS/<prefix>_speed.{csv,png} (the metric against sentences/s, every compression method),
<prefix>_heads.{csv,png} (the metric lost against heads removed, with and without DropHead) and
<prefix>_equal_speed.csv (per precision, the best compressed large model at least as fast as the
small one, against it), prefix structured (mt) or structured_cls, and returns the tables as markdown."""
import json
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence

from ..compress.size import deployed_bytes
from .stages import write_csv
from ..plotting import pyplot

# contender name -> (family, fraction removed); "heads_ffn50" is heads and FFN at 50 %
NAME = re.compile(r"^(?P<family>[a-z_]+?)(?P<percent>\d+)?(?P<int8>_int8)?$")
FAMILIES = {"dense": "dense", "dense_ft": "dense, fine-tuned as long", "heads": "heads", "ffn": "FFN neurons", "layers": "layers", "heads_ffn": "heads + FFN",
            "heads_ffn_layers": "heads + FFN + layers", "weights": "weights (unstructured)", "ipq": "iPQ",
            "small": "small model"}
PRECISIONS = ("fp32", "int8")


@dataclass(frozen=True)
class Task:
    metric: str  # the key of every score JSON, and its directory under OUT
    label: str
    prefix: str  # of the result files
    speed: str  # what sentences/s measures


TASKS = {"mt": Task("bleu", "BLEU", "structured", "fairseq-generate sentences/s, one thread (beam 5)"),
         "cls": Task("accuracy", "accuracy (%)", "structured_cls", "classifier sentences/s, one thread (fairseq-validate)")}


@dataclass(frozen=True)
class Contender:
    """One row of stage 2: a checkpoint run in fp32 or int8 (--model-overrides "{'int8_inference': True}")."""
    name: str  # FAMILY[PERCENT][_int8], e.g. heads_ffn50_int8
    checkpoint: Path
    precision: str  # fp32 or int8


def family(name: str) -> str:
    """The method of a contender name ('' when the name is not FAMILY[PERCENT][_int8])."""
    match = NAME.match(name)
    return FAMILIES.get(match["family"], "") if match else ""


def markdown(rows: List[dict]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(row[k]) for k in header) + " |" for row in rows]
    return "\n".join(lines)


def speed_rows(out: Path, contenders: Sequence[Contender], metric: str) -> List[dict]:
    speed = json.loads((out / "speed.json").read_text())
    dense = speed["dense"]
    rows = []
    for contender in contenders:
        name = contender.name
        match = NAME.match(name)
        rows.append({
            "contender": name, "method": FAMILIES[match["family"]], "removed": int(match["percent"] or 0) / 100,
            "precision": contender.precision, metric: json.loads((out / metric / f"{name}.json").read_text())[metric],
            "mb": round(deployed_bytes(str(contender.checkpoint)) / 1e6, 2),
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
    plt = pyplot()
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
    plt.close(fig)


def heads_rows(out: Path, metric: str, configs: Dict[str, str], heads_keep: Sequence[float]) -> List[dict]:
    """A row per model of stage 1 (configs: directory name -> label), fraction of heads kept and fine-tuning."""
    rows = []
    for config in configs:
        for run in sorted((out / "models" / config).glob("seed*")):
            original = json.loads((run / "heads_keep1.0.json").read_text())[metric]
            for keep in heads_keep:
                for finetuned, suffix in ((False, ""), (True, "_ft")):
                    value = json.loads((run / f"heads_keep{keep:g}{suffix}.json").read_text())[metric]
                    rows.append({"config": config, "seed": int(run.name[4:]), "heads_removed": round(1 - keep, 4),
                                 "finetuned": finetuned, f"{metric}_original": original, metric: value,
                                 f"{metric}_lost": round(original - value, 2)})
    return rows


def mean_std(values: List[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def removed_fractions(rows: List[dict]) -> List[float]:
    return sorted({r["heads_removed"] for r in rows})


def heads_table(rows: List[dict], task: Task, configs: Dict[str, str]) -> List[dict]:
    table = []
    removed_all = removed_fractions(rows)
    for config, label in configs.items():
        mine = [r for r in rows if r["config"] == config]
        entry = {"model": label, task.label: mean_std([r[f"{task.metric}_original"] for r in mine
                                                       if r["heads_removed"] == removed_all[0] and not r["finetuned"]])}
        for removed in removed_all:
            for finetuned in (False, True):
                lost = [r[f"{task.metric}_lost"] for r in mine if r["heads_removed"] == removed and r["finetuned"] == finetuned]
                entry[f"lost at {removed:.0%}{' + ft' if finetuned else ''}"] = mean_std(lost)
        table.append(entry)
    return table


def plot_heads(rows: List[dict], png: Path, arch: str, task: Task, configs: Dict[str, str]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = removed_fractions(rows)
    for config, label in configs.items():
        for finetuned, style in ((False, "--"), (True, "-")):
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
    plt.close(fig)


def equal_speed(rows: List[dict], metric: str) -> List[dict]:
    """Per precision: the small model against the best compressed large model in that precision at least as fast."""
    table = []
    for precision in PRECISIONS:
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


def write_results(out: Path, results: Path, task: Task, arch: str, small_arch: str, contenders: Sequence[Contender],
                  configs: Dict[str, str], heads_keep: Sequence[float]) -> str:
    """Every CSV and plot of the study into `results`; the tables as markdown."""
    results.mkdir(parents=True, exist_ok=True)
    prefix = results / task.prefix
    speed = speed_rows(out, contenders, task.metric)
    write_csv(Path(f"{prefix}_speed.csv"), speed)
    plot_speed(speed, Path(f"{prefix}_speed.png"), arch, task)
    heads = heads_rows(out, task.metric, configs, heads_keep)
    write_csv(Path(f"{prefix}_heads.csv"), heads)
    plot_heads(heads, Path(f"{prefix}_heads.png"), arch, task, configs)
    equal = equal_speed(speed, task.metric)
    write_csv(Path(f"{prefix}_equal_speed.csv"), equal)
    return (f"Speed and {task.label} of {arch} compressed (fine-tuned), against dense fp32:\n{markdown(speed)}\n\n"
            f"{task.label} lost when heads are removed (mean ± std over seeds):\n"
            f"{markdown(heads_table(heads, task, configs))}\n\n"
            f"Equal speed: {small_arch} against the best compressed {arch} at least as fast:\n{markdown(equal)}")
