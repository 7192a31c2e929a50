#!/usr/bin/env python3
"""Word + bigram multinomial Naive Bayes on a GLUE single-sentence task (stdlib only).

A sanity check that the labels are learnable but not trivial: prints dev and test
accuracy of a model trained on train.tsv.gz, and the majority-class accuracy on dev.

usage: nb_baseline.py OUTDIR   (holding train.tsv.gz, dev.tsv.gz, test.tsv.gz)
"""
import collections
import gzip
import math
import re
import sys
from pathlib import Path

ALPHA = 1.0  # additive (Laplace) smoothing
TOKEN = re.compile(r"\w+|[^\w\s]")


def read_tsv(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        next(f)  # header
        return [tuple(line.rstrip("\n").split("\t")) for line in f]


def features(sentence):
    words = TOKEN.findall(sentence.lower())
    return words + [f"{a} {b}" for a, b in zip(words, words[1:])]


class NaiveBayes:
    def __init__(self, rows):
        self.prior = collections.Counter(label for _, label in rows)
        self.counts = {label: collections.Counter() for label in self.prior}
        for sentence, label in rows:
            self.counts[label].update(features(sentence))
        self.vocab = len(set().union(*self.counts.values()))
        self.totals = {label: sum(c.values()) for label, c in self.counts.items()}

    def score(self, feats, label):
        denominator = self.totals[label] + ALPHA * self.vocab
        counts = self.counts[label]
        return math.log(self.prior[label]) + sum(math.log((counts[f] + ALPHA) / denominator) for f in feats)

    def predict(self, sentence):
        feats = features(sentence)
        return max(sorted(self.prior), key=lambda label: self.score(feats, label))


def accuracy(model, rows):
    return sum(model.predict(s) == label for s, label in rows) / len(rows)


def evaluate(out_dir):
    """{'dev', 'test', 'dev_majority'} accuracies for the task in OUT_DIR."""
    out_dir = Path(out_dir)
    train, dev, test = (read_tsv(out_dir / f"{name}.tsv.gz") for name in ("train", "dev", "test"))
    model = NaiveBayes(train)
    majority = model.prior.most_common(1)[0][0]
    return {"dev": accuracy(model, dev), "test": accuracy(model, test),
            "dev_majority": sum(label == majority for _, label in dev) / len(dev)}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    result = evaluate(sys.argv[1])
    print(f"dev accuracy {result['dev']:.3f}  test accuracy {result['test']:.3f}  "
          f"majority (dev) {result['dev_majority']:.3f}")
