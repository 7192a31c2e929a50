"""End to end on slices of the shipped English text and classification task:
masked-LM pretraining of roberta_l2_h128, sentence_prediction fine-tuning
from its checkpoint, fairseq-validate."""
import pytest

from conftest import USER_DIR, run

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


def test_finetune_and_validate(pretrained):
    cls_bin, checkpoint = pretrained
    n_classes = len((cls_bin / "label/dict.txt").read_text().splitlines())
    assert 2 <= n_classes <= 15
    save = checkpoint.parent.parent / "cls-ft"
    run(["fairseq-train", cls_bin, "--task", "sentence_prediction", "--criterion", "sentence_prediction",
         "--num-classes", n_classes, "--arch", "roberta_l2_h128", "--max-positions", TOKENS_PER_SAMPLE,
         "--init-token", "0", "--separator-token", "2", "--restore-file", checkpoint,
         "--reset-optimizer", "--reset-dataloader", "--reset-meters", "--batch-size", "32", "--max-update", "10",
         "--best-checkpoint-metric", "accuracy", "--maximize-best-checkpoint-metric", "--save-dir", save, *COMMON])
    log = run(["fairseq-validate", cls_bin, "--user-dir", USER_DIR, "--path", save / "checkpoint_best.pt",
               "--task", "sentence_prediction", "--criterion", "sentence_prediction", "--num-classes", n_classes,
               "--valid-subset", "valid,test",
               "--batch-size", "64"])
    output = log.stdout + log.stderr
    assert "valid on 'valid' subset" in output and "valid on 'test' subset" in output
    assert "accuracy" in output
