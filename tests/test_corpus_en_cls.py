"""Checks on the shipped real-text corpora data-bin/raw/en (MLM) and data-bin/raw/cls
(Brown genre classification), as built by fairseq_compress/corpus/build_{en,cls}.py."""
import functools
import gzip
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EN = ROOT / "data-bin" / "raw" / "en"
CLS = ROOT / "data-bin" / "raw" / "cls"
CLS_SPLITS = ("train", "dev", "test")


@functools.lru_cache(maxsize=None)
def en_lines(split):
    with gzip.open(EN / f"{split}.txt.gz", "rt", encoding="utf-8", newline="\n") as f:
        return tuple(line[:-1] if line.endswith("\n") else line for line in f)


@functools.lru_cache(maxsize=None)
def cls_rows(split):
    with gzip.open(CLS / f"{split}.tsv.gz", "rt", encoding="utf-8", newline="\n") as f:
        lines = f.read().split("\n")
    assert lines[-1] == "", f"{split}.tsv.gz does not end with a newline"
    return lines[0], [line.split("\t") for line in lines[1:-1]]


def test_en_train_is_at_least_20_mb():
    assert sum(len(line.encode("utf-8")) + 1 for line in en_lines("train")) >= 20_000_000


def test_en_has_no_empty_lines_and_nonempty_valid():
    assert en_lines("valid")
    for split in ("train", "valid"):
        assert all(line.strip() for line in en_lines(split)), f"empty line in en/{split}"


def test_en_splits_share_no_line():
    assert not set(en_lines("train")) & set(en_lines("valid"))


def test_cls_is_glue_tsv_with_a_few_classes():
    labels, total = set(), 0
    for split in CLS_SPLITS:
        header, rows = cls_rows(split)
        assert header == "sentence\tlabel"
        assert rows, f"cls/{split} has no rows"
        for row in rows:
            assert len(row) == 2 and row[0].strip() and row[1], f"bad cls/{split} row {row!r}"
            labels.add(row[1])
        total += len(rows)
    assert 2 <= len(labels) <= 15
    assert total >= 10_000


def test_cls_splits_share_no_sentence():
    seen = {}
    for split in CLS_SPLITS:
        for sentence, _ in cls_rows(split)[1]:
            assert seen.setdefault(sentence, split) == split, f"{sentence!r} in {seen[sentence]} and {split}"


def test_cls_splits_share_no_brown_file():
    files = json.loads((CLS / "split_files.json").read_text(encoding="utf-8"))
    assert set(files) == set(CLS_SPLITS)
    owner = {}
    for split in CLS_SPLITS:
        assert files[split], f"no files in cls {split}"
        for file_id in files[split]:
            assert owner.setdefault(file_id, split) == split, f"{file_id} in {owner[file_id]} and {split}"


def test_cls_held_out_sentences_are_not_pretrained_on():
    en_train = set(en_lines("train"))
    leaked = [s for split in ("dev", "test") for s, _ in cls_rows(split)[1] if s in en_train]
    assert not leaked, f"{len(leaked)} cls dev/test sentences in en/train, e.g. {leaked[0]!r}"
