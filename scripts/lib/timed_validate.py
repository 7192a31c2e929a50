"""The stock fairseq-validate (fairseq_cli.validate, the same command line) with its forward
passes timed. Unlike fairseq-generate, fairseq-validate reports no speed, so every valid step
(task.valid_step: the criterion's forward under no_grad) is timed, model loading and data
reading excluded, and a last record, logged as fairseq logs its statistics ("| timed | {json}":
sentences, seconds, sentences_per_s), is what scripts/lib/validate_json.py reads. Used by
scripts/eval_cls.sh --speed."""
import json
import logging
import time

import torch
from fairseq.tasks import FairseqTask
from fairseq_cli import validate


def main():
    totals = {"seconds": 0.0, "sentences": 0}
    stock_valid_step = FairseqTask.valid_step

    def timed_valid_step(self, sample, model, criterion):
        start = time.perf_counter()
        result = stock_valid_step(self, sample, model, criterion)
        if torch.cuda.is_available():  # CUDA kernels run asynchronously: wait for this step's
            torch.cuda.synchronize()
        totals["seconds"] += time.perf_counter() - start
        totals["sentences"] += int(result[2].get("nsentences", 0))
        return result

    # No task the plugin validates (sentence_prediction and its _pruning twin) overrides valid_step.
    FairseqTask.valid_step = timed_valid_step
    validate.cli_main()
    if not totals["sentences"]:
        raise SystemExit("error: fairseq-validate scored no sentence (empty --valid-subset?)")
    speed = {**totals, "sentences_per_s": round(totals["sentences"] / totals["seconds"], 2)}
    logging.getLogger("timed").info(json.dumps(speed))  # in fairseq_cli.validate's log format


if __name__ == "__main__":
    main()
