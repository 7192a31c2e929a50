"""The stock fairseq-validate (fairseq_cli.validate, the same command line) with its forward
passes timed. Unlike fairseq-generate, fairseq-validate reports no speed, so every valid step
(task.valid_step: the criterion's forward under no_grad) is timed, model loading and data
reading excluded, and a last record, logged as fairseq logs its statistics ("| timed | {json}":
sentences, seconds, sentences_per_s), is what scripts/lib/validate_json.py reads. fairseq's
--max-valid-steps (batches per subset), which fairseq-train honours and fairseq-validate ignores,
is honoured, so that a speed measurement can take a sample of each subset: sentence_prediction's
batches come in a seeded random order, not sorted by length. Used by scripts/eval_cls.sh --speed.
"""
import argparse
import json
import logging
import time

import torch
from fairseq.logging import progress_bar
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
    steps_parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    steps_parser.add_argument("--max-valid-steps", type=int)
    cap = steps_parser.parse_known_args()[0].max_valid_steps
    if cap is not None:
        # fairseq_cli.validate hands each subset's CountingIterator to the progress bar; take() truncates it.
        stock_progress_bar = progress_bar.progress_bar
        progress_bar.progress_bar = lambda iterator, **kwargs: stock_progress_bar(iterator.take(cap), **kwargs)
    validate.cli_main()
    if not totals["sentences"]:
        raise SystemExit("error: fairseq-validate scored no sentence (empty --valid-subset?)")
    speed = {**totals, "sentences_per_s": round(totals["sentences"] / totals["seconds"], 2)}
    logging.getLogger("timed").info(json.dumps(speed))  # in fairseq_cli.validate's log format


if __name__ == "__main__":
    main()
