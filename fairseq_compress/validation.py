"""fairseq-validate for the classification pipelines (scripts/eval_cls.sh):

- ``fairseq-compress timed-validate ARGS``: the stock fairseq-validate (fairseq_cli.validate, the
  same command line) with its forward passes timed, model loading and data reading excluded
  (``fairseq_hooks.time_validation``); a last record, logged as fairseq logs its statistics
  ("| timed | {json}": sentences, seconds, sentences_per_s), holds the speed. fairseq's
  --max-valid-steps (batches per subset), which fairseq-train honours and fairseq-validate ignores,
  is honoured, so that a speed measurement can take a sample of each subset: sentence_prediction's
  batches come in a seeded random order, not sorted by length.
- ``fairseq-compress validation-summary < LOG``: one metric of a fairseq-validate log (--log-format
  json) as JSON, and the speed when the log is timed-validate's.

They are fairseq-compress commands, not scripts beside the pipelines, so that the plugin and fairseq
are imported once per call (and once per test-suite worker, tests/cli_server.py).
"""
import argparse
import json
import logging
import sys
from typing import Dict, List

from .fairseq_hooks import time_validation
from .studies.fairseq_log import records


def timed_validate(argv: List[str]) -> None:
    """fairseq-validate with `argv`, its valid steps timed; the speed logged as the 'timed' record."""
    from fairseq_cli import validate

    steps = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    steps.add_argument("--max-valid-steps", type=int)
    cap = steps.parse_known_args(argv)[0].max_valid_steps
    if cap is not None and cap < 1:
        raise ValueError(f"--max-valid-steps must be a positive integer (batches per subset), got {cap}")
    totals = {"seconds": 0.0, "sentences": 0}
    time_validation(totals, cap)
    sys.argv = ["fairseq-validate", *argv]  # fairseq_cli.validate parses sys.argv
    validate.cli_main()
    if not totals["sentences"]:
        raise ValueError("fairseq-validate scored no sentence (empty --valid-subset?)")
    speed = {**totals, "sentences_per_s": round(totals["sentences"] / totals["seconds"], 2)}
    logging.getLogger("timed").info(json.dumps(speed))  # in fairseq_cli.validate's log format


def summary(log_text: str, metric: str) -> Dict[str, float]:
    """{METRIC: test value (dev when no test subset was scored), "dev_METRIC": dev value}, and "sentences_per_s"
    of a timed log."""
    values = {subset: found[-1][metric] for subset in ("valid", "test")
              if (found := [r for r in records(log_text, subset) if metric in r])}
    if "valid" not in values:
        raise ValueError(f"the fairseq-validate log has no {metric} for the 'valid' subset "
                         "(fairseq-validate logs it with --log-format json)")
    result = {metric: values.get("test", values["valid"]), f"dev_{metric}": values["valid"]}
    timed = records(log_text, "timed")
    if timed:
        result["sentences_per_s"] = timed[-1]["sentences_per_s"]
    return result
