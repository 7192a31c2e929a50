"""Sentences/s of every contender of scripts/structured_study.sh on one thread and on two, in one
run: each repeat runs every contender in turn on DATA's test split, one thread then two, so
machine noise hits all alike. --task mt translates (translation_race.translate: eval_bleu.sh,
the stock fairseq-generate, beam 5, its own timer); --task cls classifies (eval_cls.sh --speed:
the stock fairseq-validate with its forward passes timed, dev and test splits, or with
--speed-sentences N a random sample of N of each). A contender is
NAME=CHECKPOINT:fp32 or NAME=CHECKPOINT:int8 (fairseq's --model-overrides
"{'int8_inference': True}"). Writes {NAME: {"sent_s_1": median, "sent_s_2": median}} as JSON
to --out, and prints it.

    .venv/bin/python scripts/benchmarks/structured_race.py [--task mt] --data DIR --out speed.json [--repeats 1] [cls: --speed-sentences N] NAME=CKPT:fp32 ...
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple

from fairseq_compress.studies.stages import ROOT
from fairseq_compress.studies.translation_race import INT8, translate

THREADS = (1, 2)


def classify(ckpt: Path, data: Path, extra: Sequence[str], threads: int,
             sentences: Optional[int] = None) -> Tuple[float, float]:
    """(test accuracy, sentences/s) of one eval_cls.sh --speed run on `threads` threads, over
    `sentences` of each split when given."""
    sample = ["--speed-sentences", str(sentences)] if sentences else []
    result = subprocess.run(["bash", str(ROOT / "scripts/eval_cls.sh"), str(ckpt), str(data), "--speed", *sample, "--", *extra],
                            capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if result.returncode:
        sys.exit(f"error: eval_cls.sh failed: {result.stderr.strip().splitlines()[-1:]}")
    scores = json.loads(result.stdout)
    return scores["accuracy"], scores["sentences_per_s"]


RUNNERS = {"mt": translate, "cls": classify}


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
    parser.add_argument("--task", choices=sorted(RUNNERS), default="mt")
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--speed-sentences", type=int, help="cls: time a sample of N sentences of each split")
    parser.add_argument("contenders", nargs="+", metavar="NAME=CKPT:PRECISION")
    args = parser.parse_args()
    if args.repeats < 1:
        sys.exit(f"error: --repeats must be >= 1, got {args.repeats}")
    if args.speed_sentences is not None and (args.task != "cls" or args.speed_sentences < 1):
        sys.exit(f"error: --speed-sentences must be >= 1 and is for --task cls (a mt --data is its own sample), "
                 f"got {args.speed_sentences} with --task {args.task}")
    contenders = [parse_contender(c) for c in args.contenders]
    runner = RUNNERS[args.task]
    if args.speed_sentences:
        runner = partial(runner, sentences=args.speed_sentences)
    speeds: Dict[str, Dict[int, List[float]]] = {name: {t: [] for t in THREADS} for name, _, _ in contenders}
    for _ in range(args.repeats):
        for name, ckpt, extra in contenders:
            for threads in THREADS:
                speeds[name][threads].append(runner(ckpt, args.data, extra, threads)[1])
    result = {name: {f"sent_s_{t}": round(statistics.median(v), 2) for t, v in by_threads.items()}
              for name, by_threads in speeds.items()}
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(args.out)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
