"""Read a fairseq-validate log on stdin, print one metric as JSON:
{"<metric>": test value (dev when no test subset was scored), "dev_<metric>": dev value}, and
"sentences_per_s" when the log is timed_validate.py's."""
import argparse
import json
import re
import sys


def subset_metrics(log_text, metric):
    """{subset: value} from lines like "valid on 'test' subset | loss 1.2 | accuracy 45.3 | ..."."""
    pattern = re.compile(rf"on '(\w+)' subset \|.*?\| {re.escape(metric)} ([0-9.]+)")
    return {m.group(1): float(m.group(2)) for m in pattern.finditer(log_text)}


def timed_speed(log_text):
    """sentences/s of timed_validate.py's last line, or None."""
    found = re.findall(r"^timed: \d+ sentences in [0-9.]+ s \(([0-9.]+) sentences/s\)$", log_text, re.MULTILINE)
    return float(found[-1]) if found else None


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metric", default="accuracy")
    args = parser.parse_args()
    log_text = sys.stdin.read()
    values = subset_metrics(log_text, args.metric)
    if "valid" not in values:
        raise SystemExit(f"error: the fairseq-validate log has no {args.metric} for the 'valid' subset")
    result = {args.metric: values.get("test", values["valid"]), f"dev_{args.metric}": values["valid"]}
    speed = timed_speed(log_text)
    if speed is not None:
        result["sentences_per_s"] = speed
    print(json.dumps(result))


if __name__ == "__main__":
    main()
