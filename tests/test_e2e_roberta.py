"""End to end on slices of the shipped English text and classification task:
masked-LM pretraining of roberta_l2_h128, sentence_prediction fine-tuning
from its checkpoint, fairseq-validate (and scripts/eval_cls.sh, timed or not)."""
import json

import pytest

from conftest import USER_DIR, log_records, one_line_error, run, script

TOKENS_PER_SAMPLE = 512  # the longest cls sentence in 1k-piece units fits
COMMON = ["--user-dir", USER_DIR, "--cpu", "--seed", "1", "--optimizer", "adam", "--lr", "0.0005",
          "--no-progress-bar", "--log-interval", "5", "--num-workers", "0", "--no-epoch-checkpoints"]


@pytest.fixture(scope="module")
def pretrained(mlm_data, tmp_path_factory):
    en_bin, cls_bin = mlm_data
    save = tmp_path_factory.mktemp("roberta")
    run(["fairseq-train", en_bin, "--task", "masked_lm", "--criterion", "masked_lm",
         "--arch", "roberta_l2_h128", "--tokens-per-sample", TOKENS_PER_SAMPLE,
         "--max-tokens", "4096", "--max-update", "10", "--save-dir", save, *COMMON])
    return cls_bin, save / "checkpoint_last.pt"


@pytest.fixture(scope="module")
def finetuned(pretrained):
    """(cls_bin, the fine-tuned checkpoint_best.pt, the number of classes)."""
    cls_bin, checkpoint = pretrained
    n_classes = len((cls_bin / "label/dict.txt").read_text().splitlines())
    save = checkpoint.parent.parent / "cls-ft"
    run(["fairseq-train", cls_bin, "--task", "sentence_prediction", "--criterion", "sentence_prediction",
         "--num-classes", n_classes, "--arch", "roberta_l2_h128", "--max-positions", TOKENS_PER_SAMPLE,
         "--init-token", "0", "--separator-token", "2", "--restore-file", checkpoint,
         "--reset-optimizer", "--reset-dataloader", "--reset-meters", "--batch-size", "32", "--max-update", "10",
         "--best-checkpoint-metric", "accuracy", "--maximize-best-checkpoint-metric", "--save-dir", save, *COMMON])
    return cls_bin, save / "checkpoint_best.pt", n_classes


def test_finetune_and_validate(finetuned):
    cls_bin, checkpoint, n_classes = finetuned
    assert 2 <= n_classes <= 15
    log = run(["fairseq-validate", cls_bin, "--user-dir", USER_DIR, "--path", checkpoint,
               "--task", "sentence_prediction", "--criterion", "sentence_prediction", "--num-classes", n_classes,
               "--valid-subset", "valid,test",
               "--batch-size", "64"])
    output = log.stdout + log.stderr
    assert "valid on 'valid' subset" in output and "valid on 'test' subset" in output
    assert "accuracy" in output


def test_eval_cls_speed_times_the_same_validation(finetuned):
    """--speed runs the same fairseq-validate (same accuracies) and times its 400 dev + test sentences."""
    cls_bin, checkpoint, _ = finetuned
    eval_cls = script("eval_cls.sh") + [checkpoint, cls_bin, "--max-positions", TOKENS_PER_SAMPLE]
    plain = json.loads(run(eval_cls).stdout)
    timed = json.loads(run(eval_cls + ["--speed"]).stdout)
    assert timed.pop("sentences_per_s") > 0 and timed == plain and "sentences_per_s" not in plain
    assert log_records(checkpoint.with_suffix(".validate.log").read_text(), "timed")[-1]["sentences"] == 400
    int8 = json.loads(run(eval_cls + ["--speed", "--", "--model-overrides", "{'int8_inference': True}"]).stdout)
    assert abs(int8["accuracy"] - plain["accuracy"]) <= 10 and int8["sentences_per_s"] > 0
    # fairseq-validate never prepares the model for inference: the plugin quantizes it at its first forward
    assert "Linear layers run with torch's dynamic int8 kernels" in checkpoint.with_suffix(".validate.log").read_text()
    # a sample: 100 sentences of each 200-sentence split are 2 batches of 64 (fairseq's --max-valid-steps 2)
    assert json.loads(run(eval_cls + ["--speed-sentences", "100"]).stdout)["sentences_per_s"] > 0
    assert log_records(checkpoint.with_suffix(".validate.log").read_text(), "timed")[-1]["sentences"] == 256
    one_line_error(run(eval_cls + ["--speed-sentences", "0"], check=False),
                   "--speed-sentences must be a positive integer, got '0'")


def test_timed_validate_takes_fairseq_validates_command_line(finetuned):
    """fairseq-compress timed-validate hands every argument to fairseq-validate, options before DATA too, and
    validation-summary reads its log; a log without the metric, or no batch to time, is one line."""
    cls_bin, checkpoint, n_classes = finetuned
    validate = ["--path", checkpoint, cls_bin, "--user-dir", USER_DIR, "--task", "sentence_prediction",
                "--criterion", "sentence_prediction", "--num-classes", n_classes, "--max-positions",
                TOKENS_PER_SAMPLE, "--batch-size", "64", "--log-format", "json", "--max-valid-steps", "1"]
    timed = run(["fairseq-compress", "timed-validate", *validate])
    log = timed.stdout + timed.stderr
    assert log_records(log, "timed")[-1]["sentences"] == 64  # one batch of the dev split
    summary = run(["fairseq-compress", "validation-summary"], input=log)
    assert set(json.loads(summary.stdout)) == {"accuracy", "dev_accuracy", "sentences_per_s"}
    one_line_error(run(["fairseq-compress", "validation-summary", "--metric", "f1"], check=False, input=log),
                   "fairseq-compress validation-summary: error: the fairseq-validate log has no f1")
    one_line_error(run(["fairseq-compress", "timed-validate", *validate, "--max-valid-steps", "0"], check=False),
                   "fairseq-compress timed-validate: error: --max-valid-steps must be a positive integer")
