"""End to end on slices of the shipped English text and classification task:
masked-LM pretraining of roberta_l2_h128, sentence_prediction fine-tuning
from its checkpoint, fairseq-validate."""
import pytest

from conftest import RAW, ROOT, USER_DIR, head_lines, run

TOKENS_PER_SAMPLE = 512  # the longest cls sentence in 1k-piece units fits
COMMON = ["--user-dir", USER_DIR, "--cpu", "--seed", "1", "--optimizer", "adam", "--lr", "0.0005",
          "--no-progress-bar", "--log-interval", "5", "--num-workers", "0", "--no-epoch-checkpoints"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    work = tmp_path_factory.mktemp("roberta")
    (work / "en").mkdir()
    (work / "cls").mkdir()
    head_lines(RAW / "en/train.txt.gz", work / "en/train.txt", 3000)
    head_lines(RAW / "en/valid.txt.gz", work / "en/valid.txt", 100)
    for split, n in (("train", 800), ("dev", 200), ("test", 200)):
        head_lines(RAW / f"cls/{split}.tsv.gz", work / f"cls/{split}.tsv", n + 1)
    run(["bash", ROOT / "scripts/prepare_mlm.sh", work / "en", work / "en-bin", "--vocab-size", "1000"])
    run(["bash", ROOT / "scripts/prepare_glue.sh", work / "cls", work / "cls-bin", work / "en-bin"])
    save = work / "mlm"
    run(["fairseq-train", work / "en-bin", "--task", "masked_lm", "--criterion", "masked_lm",
         "--arch", "roberta_l2_h128", "--tokens-per-sample", TOKENS_PER_SAMPLE,
         "--max-tokens", "4096", "--max-update", "10", "--save-dir", save, *COMMON])
    return work, save / "checkpoint_last.pt"


def test_finetune_and_validate(pretrained):
    work, checkpoint = pretrained
    n_classes = len((work / "cls-bin/label/dict.txt").read_text().splitlines())
    assert 2 <= n_classes <= 15
    save = work / "cls-ft"
    run(["fairseq-train", work / "cls-bin", "--task", "sentence_prediction", "--criterion", "sentence_prediction",
         "--num-classes", n_classes, "--arch", "roberta_l2_h128", "--max-positions", TOKENS_PER_SAMPLE,
         "--init-token", "0", "--separator-token", "2", "--restore-file", checkpoint,
         "--reset-optimizer", "--reset-dataloader", "--reset-meters", "--batch-size", "32", "--max-update", "10",
         "--best-checkpoint-metric", "accuracy", "--maximize-best-checkpoint-metric", "--save-dir", save, *COMMON])
    log = run(["fairseq-validate", work / "cls-bin", "--user-dir", USER_DIR, "--path", save / "checkpoint_best.pt",
               "--task", "sentence_prediction", "--criterion", "sentence_prediction", "--num-classes", n_classes,
               "--valid-subset", "valid,test",
               "--batch-size", "64"])
    output = log.stdout + log.stderr
    assert "valid on 'valid' subset" in output and "valid on 'test' subset" in output
    assert "accuracy" in output
