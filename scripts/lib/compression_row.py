"""One row of the compression sweep, as JSON: a compressed (or the original) checkpoint's
`fairseq-compress size --json` report and its metric JSON (eval_bleu.sh --json or eval_cls.sh)
with the method that made it. MB is the file on disk, or for the original the fp32 weights."""
import argparse
import json


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", required=True, help="fairseq-compress size --json of the checkpoint")
    parser.add_argument("--metric", required=True, help="its metric JSON: {\"bleu\": ...} or {\"accuracy\": ...}")
    parser.add_argument("--model", required=True)
    parser.add_argument("--method", required=True, help="original, quantize, oneshot or gradual")
    parser.add_argument("--sparsity", type=float, required=True)
    parser.add_argument("--bits", type=int, required=True)
    args = parser.parse_args()
    with open(args.size) as f:
        size = json.load(f)
    with open(args.metric) as f:
        metric = json.load(f)
    stored = size["model_params"] * 4 if args.method == "original" else size["file_bytes"]
    name = "bleu" if "bleu" in metric else "accuracy"
    print(json.dumps({"model": args.model, "params": size["model_params"], "method": args.method,
                      "sparsity": args.sparsity, "bits": args.bits, "mb": round(stored / 1e6, 3), "metric": name,
                      "value": metric[name]}))


if __name__ == "__main__":
    main()
