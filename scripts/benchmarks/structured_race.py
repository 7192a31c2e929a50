"""Sentences/s of every contender of scripts/structured_study.sh on one thread and on two, in one
run: each repeat translates DATA's test split with every contender in turn, one thread then
two (generation_speed.translate: eval_bleu.sh, the stock fairseq-generate, beam 5), so machine
noise hits all alike. A contender is NAME=CHECKPOINT:fp32 or NAME=CHECKPOINT:int8 (fairseq's
--model-overrides "{'int8_inference': True}"). Writes {NAME: {"sent_s_1": median,
"sent_s_2": median}} as JSON to --out, and prints it.

    .venv/bin/python scripts/benchmarks/structured_race.py --data DIR --out speed.json [--repeats 1] NAME=CKPT:fp32 ...
"""
import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Tuple

from generation_speed import INT8, translate

THREADS = (1, 2)


def parse_contender(text: str) -> Tuple[str, Path, List[str]]:
    name, _, rest = text.partition("=")
    ckpt, _, precision = rest.rpartition(":")
    if not name or precision not in ("fp32", "int8"):
        sys.exit(f"error: contender '{text}': NAME=CHECKPOINT:fp32 or NAME=CHECKPOINT:int8")
    if not Path(ckpt).is_file():
        sys.exit(f"error: contender {name}: no checkpoint {ckpt}")
    return name, Path(ckpt), INT8 if precision == "int8" else []


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("contenders", nargs="+", metavar="NAME=CKPT:PRECISION")
    args = parser.parse_args()
    if args.repeats < 1:
        sys.exit(f"error: --repeats must be >= 1, got {args.repeats}")
    contenders = [parse_contender(c) for c in args.contenders]
    speeds: Dict[str, Dict[int, List[float]]] = {name: {t: [] for t in THREADS} for name, _, _ in contenders}
    for _ in range(args.repeats):
        for name, ckpt, extra in contenders:
            for threads in THREADS:
                speeds[name][threads].append(translate(ckpt, args.data, extra, threads)[1])
    result = {name: {f"sent_s_{t}": round(statistics.median(v), 2) for t, v in by_threads.items()}
              for name, by_threads in speeds.items()}
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(args.out)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
