"""The committed EN-FR corpus in data-bin/raw/en_fr (built by fairseq_compress/corpus/build_en_fr.py)."""
import csv
import gzip
from itertools import combinations
from pathlib import Path

import pytest

CORPUS = Path(__file__).resolve().parents[1] / "data-bin" / "raw" / "en_fr"
SPLITS = ("train", "valid", "test")


def read_lines(path):
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        text = f.read()
    assert text.endswith("\n"), path
    return text[:-1].split("\n")


@pytest.fixture(scope="module")
def pairs():
    """{split: [(en, fr)]}, checking that each split's two files are line-aligned."""
    out = {}
    for split in SPLITS:
        en, fr = read_lines(CORPUS / f"{split}.en.gz"), read_lines(CORPUS / f"{split}.fr.gz")
        assert len(en) == len(fr), split
        out[split] = list(zip(en, fr))
    return out


@pytest.fixture(scope="module")
def packages():
    with open(CORPUS / "pairs_by_package.tsv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_segments_are_single_clean_lines(pairs):
    for split, split_pairs in pairs.items():
        for en, fr in split_pairs:
            for segment in (en, fr):
                assert segment.strip() and segment == " ".join(segment.split()), (split, segment)
                assert "\t" not in segment and "\r" not in segment, (split, segment)


def test_split_sizes(pairs):
    assert len(pairs["valid"]) >= 1500
    assert len(pairs["test"]) >= 1500
    assert sum(map(len, pairs.values())) >= 80_000


def test_package_table_matches_files(pairs, packages):
    for split in SPLITS:
        counts = [int(row["pairs"]) for row in packages if row["split"] == split]
        assert sum(counts) == len(pairs[split]), split
    assert all(row["version"] and row["licence"] for row in packages)


def test_no_package_in_two_splits(packages):
    names = [row["package"] for row in packages]
    assert len(names) == len(set(names))


def test_no_pair_or_english_sentence_in_two_splits(pairs):
    for a, b in combinations(SPLITS, 2):
        assert not set(pairs[a]) & set(pairs[b]), (a, b)
        assert not {en for en, _ in pairs[a]} & {en for en, _ in pairs[b]}, (a, b)
