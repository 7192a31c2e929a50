"""Detokenized, case-sensitive sacreBLEU of a hypothesis file against raw references."""
import argparse
import json
import sys

import sacrebleu


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ref", required=True, help="raw (detokenized) reference text")
    parser.add_argument("--hyp", required=True, help="detokenized hypotheses, same order")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    refs, hyps = read_lines(args.ref), read_lines(args.hyp)
    if len(refs) != len(hyps):
        sys.exit(f"error: {args.hyp} has {len(hyps)} lines but {args.ref} has {len(refs)}")
    metric = sacrebleu.BLEU()
    score = metric.corpus_score(hyps, [refs])
    signature = str(metric.get_signature())
    if args.json:
        print(json.dumps({"bleu": round(score.score, 2), "signature": signature, "sentences": len(refs)}))
    else:
        print(f"{score}  (signature: {signature})")


if __name__ == "__main__":
    main()
