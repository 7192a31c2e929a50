"""Read a fairseq-validate log (--log-format json) on stdin, print one metric as JSON:
{"<metric>": test value (dev when no test subset was scored), "dev_<metric>": dev value}, and
"sentences_per_s" when the log is timed_validate.py's."""
import argparse
import json
import sys
from typing import Dict, Optional

from fairseq_compress.studies.fairseq_log import records


def subset_metrics(log_text: str, metric: str) -> Dict[str, float]:
    """{subset: value} of the 'valid' and 'test' records that hold the metric."""
    return {subset: found[-1][metric] for subset in ("valid", "test")
            if (found := [r for r in records(log_text, subset) if metric in r])}


def timed_speed(log_text: str) -> Optional[float]:
    """sentences/s of timed_validate.py's last record, or None."""
    found = records(log_text, "timed")
    return found[-1]["sentences_per_s"] if found else None


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--metric", default="accuracy")
    args = parser.parse_args()
    log_text = sys.stdin.read()
    values = subset_metrics(log_text, args.metric)
    if "valid" not in values:
        raise SystemExit(f"error: the fairseq-validate log has no {args.metric} for the 'valid' subset "
                         "(fairseq-validate logs it with --log-format json)")
    result = {args.metric: values.get("test", values["valid"]), f"dev_{args.metric}": values["valid"]}
    speed = timed_speed(log_text)
    if speed is not None:
        result["sentences_per_s"] = speed
    print(json.dumps(result))


if __name__ == "__main__":
    main()
