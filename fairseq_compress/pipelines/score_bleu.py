"""Detokenized, case-sensitive sacreBLEU of a hypothesis file against raw references; with
--speed-log, the JSON also holds the translating runtime's own speed ("sentences_per_s": the
last "(X sentences/s" of fairseq-generate's or fairseq_compress/pipelines/ct2_translate.py's log)."""
import argparse
import json
import re
import sys
from pathlib import Path

import sacrebleu


def logged_speed(log: Path) -> float:
    """sentences/s of the last translation timer line of `log`."""
    speeds = re.findall(r"\(([\d.]+) sentences/s", log.read_text(encoding="utf-8"))
    if not speeds:
        sys.exit(f"error: --speed-log {log} has no 'sentences/s' line")
    return float(speeds[-1])


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ref", required=True, help="raw (detokenized) reference text")
    parser.add_argument("--hyp", required=True, help="detokenized hypotheses, same order")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--speed-log", type=Path, help="the translation log whose speed the JSON reports")
    args = parser.parse_args()
    refs, hyps = read_lines(args.ref), read_lines(args.hyp)
    if len(refs) != len(hyps):
        sys.exit(f"error: {args.hyp} has {len(hyps)} lines but {args.ref} has {len(refs)}")
    metric = sacrebleu.BLEU()
    score = metric.corpus_score(hyps, [refs])
    signature = str(metric.get_signature())
    if args.json:
        result = {"bleu": round(score.score, 2), "signature": signature, "sentences": len(refs)}
        if args.speed_log:
            result["sentences_per_s"] = logged_speed(args.speed_log)
        print(json.dumps(result))
    else:
        print(f"{score}  (signature: {signature})")


if __name__ == "__main__":
    main()
