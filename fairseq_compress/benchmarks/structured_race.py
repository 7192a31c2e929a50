"""Sentences/s of every contender of the structured study (fairseq_compress/studies/structured.py) on
one thread and on two, in one run: each repeat runs every contender in turn on DATA's test split, one
thread then two, so machine noise hits all alike (fairseq_compress/studies/structured_race.py, which
the study calls itself). --task mt translates (eval_bleu.sh, the stock fairseq-generate, beam 5, its
own timer); --task cls classifies (eval_cls.sh --speed: the stock fairseq-validate with its forward
passes timed, dev and test splits, or with --speed-sentences N a random sample of N of each). A
contender is NAME=CHECKPOINT:fp32 or NAME=CHECKPOINT:int8 (fairseq's --model-overrides
"{'int8_inference': True}"). Writes {NAME: {"sent_s_1": median, "sent_s_2": median}} as JSON
to --out, and prints it.

    .venv/bin/python -m fairseq_compress.benchmarks.structured_race [--task mt] --data DIR --out speed.json [--repeats 1] [cls: --speed-sentences N] NAME=CKPT:fp32 ...
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Tuple

from fairseq_compress.studies.structured_race import RUNNERS, race_once


def parse_contender(text: str) -> Tuple[str, Path, str]:
    name, _, rest = text.partition("=")
    ckpt, _, precision = rest.rpartition(":")
    if not name or precision not in ("fp32", "int8"):
        sys.exit(f"error: contender '{text}': NAME=CHECKPOINT:fp32 or NAME=CHECKPOINT:int8")
    if not Path(ckpt).is_file():
        sys.exit(f"error: contender {name}: no checkpoint {ckpt}")
    return name, Path(ckpt), precision


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
    args.out.unlink(missing_ok=True)  # a benchmark measures again
    print(json.dumps(race_once(args.out, args.task, contenders, args.data, args.repeats, args.speed_sentences)))


if __name__ == "__main__":
    main()
