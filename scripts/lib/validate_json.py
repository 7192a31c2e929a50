"""Read a fairseq-validate log on stdin, print one metric as JSON:
{"<metric>": test value (dev when no test subset was scored), "dev_<metric>": dev value}."""
import argparse
import json
import re
import sys


def subset_metrics(log_text, metric):
    """{subset: value} from lines like "valid on 'test' subset | loss 1.2 | accuracy 45.3 | ..."."""
    pattern = re.compile(rf"on '(\w+)' subset \|.*?\| {re.escape(metric)} ([0-9.]+)")
    return {m.group(1): float(m.group(2)) for m in pattern.finditer(log_text)}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metric", default="accuracy")
    args = parser.parse_args()
    values = subset_metrics(sys.stdin.read(), args.metric)
    if "valid" not in values:
        raise SystemExit(f"error: the fairseq-validate log has no {args.metric} for the 'valid' subset")
    print(json.dumps({args.metric: values.get("test", values["valid"]), f"dev_{args.metric}": values["valid"]}))


if __name__ == "__main__":
    main()
