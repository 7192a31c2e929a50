"""Build the EN-FR corpus in data-bin/raw/en_fr from Debian's French gettext catalogs.

Each package in the list is fetched with `apt-get download` and unpacked with `dpkg-deb -x`;
every usr/share/locale/fr/LC_MESSAGES/*.mo gives (English msgid, French msgstr) pairs. Pairs
are cleaned, deduplicated and split train/valid/test *by package*, so no program's strings
leak between splits.

    python3 fairseq_compress/corpus/build_en_fr.py --work /tmp/corpus_work --out data-bin/raw/en_fr

Stdlib only. Reruns with the same downloaded .debs give byte-identical outputs.
"""
import argparse
import difflib
import fnmatch
import gzip
import html
import random
import re
import shutil
import subprocess
import time
import unicodedata
from pathlib import Path

from mo_catalog import read_mo  # beside this file, which Python runs with its folder on sys.path

DEFAULT_PACKAGES = Path(__file__).resolve().parent / "fr_mo_packages.txt"
CATALOG_DIR = "usr/share/locale/fr/LC_MESSAGES"
FRENCH_PO_PATHS = ("po/fr.po", "po/fr/messages.po")  # where upstream sources keep them
SEED = 1234
MIN_WORDS = 3  # plain words per side; shorter strings are labels, not sentences
MAX_TOKENS = 60  # whitespace tokens per side
NEAR_IDENTICAL = 0.9  # difflib ratio above which a "translation" is really untranslated
EVAL_TARGET, EVAL_MAX = 2000, 4000  # pairs in each of valid and test
EVAL_PACKAGE_MAX = 2500  # packages bigger than this stay in train, to keep eval sets mixed
SPLITS = ("train", "valid", "test")

# Tags that separate text (replaced by a space); all other markup tags are dropped in place.
BLOCK_TAGS = {"p", "br", "hr", "li", "ul", "ol", "dl", "dt", "dd", "tr", "td", "th", "table",
              "html", "head", "body", "qt", "title", "subtitle", "div", "h1", "h2", "h3", "h4",
              "para", "nl", "list", "item", "note", "warning", "center", "blockquote", "pre"}
ATTRIBUTE = r"""\s+[\w:-]+\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>]+)"""
TAG = re.compile(rf"<(/?)([A-Za-z][\w:-]*)((?:{ATTRIBUTE})*)\s*(/?)>")  # slash, name, attrs, /
STYLE = re.compile(r"<(style|script)\b.*?</\1>|<!DOCTYPE[^>]*>|<!--.*?-->", re.S | re.I)
ENTITY = re.compile(r"&(?:lt|gt|amp|quot|apos|nbsp|#\d+|#x[0-9A-Fa-f]+);")
# A word with one accelerator marker: "_File", "&Open", "Ou_vrir". Letters only on both
# sides and no code around it, so "base_addr2", "__init__", "%<_Atomic%>" and entities
# ("&lt;") are not candidates.
ACCEL = re.compile(r"(?<![^\s(\[«“\"'‘’-])([^\W\d_]*)[_&]([^\W\d_]+)(?![\w&;@])")
# "Avancer (_F)": the access key, added by translations that lack the original letter.
ACCEL_HINT = re.compile(r"\s*\([_&][^\W_]\)")
# "...corresponding\nshort options.\n": a C escape left unexpanded in the msgid (glibc).
# Before a quote or bracket it is quoted text ("do not both end with '\n'") and stays.
LITERAL_NEWLINE = re.compile(r"\\n(?=[^\W\d_]|$)")
GETTEXT_CONTEXT = re.compile(r"[^\s|]+\|(?=\S)")  # "Filtering_on|Inverse Event" (sgettext)
BARE_WORD = re.compile(r"(?<![\w&])[^\W\d_]+(?![\w&])")
EDGE_PUNCT = "\"'.,;:!?()[]{}«»“”‘’„…*"
PLAIN_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")


# --- fetching -----------------------------------------------------------------------------

def read_package_list(path):
    """Package names from a whitespace-separated list with '#' comments."""
    names = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        names += line.split("#", 1)[0].split()
    return sorted(set(names))


def find_deb(debs, name):
    """The downloaded .deb of `name` (package names never contain '_'), or None."""
    found = sorted(debs.glob(f"{name}_*.deb"))
    return found[-1] if found else None


def download(names, debs):
    """`apt-get download` the packages not yet in `debs`; return {name: .deb path}."""
    debs.mkdir(parents=True, exist_ok=True)
    missing = [n for n in names if find_deb(debs, n) is None]
    if missing:
        subprocess.run(["apt-get", "download", *missing], cwd=debs, check=True,
                       stdout=subprocess.DEVNULL)
    return {n: find_deb(debs, n) for n in names}


def extract(deb, root):
    """Unpack `deb` into a fresh `root` directory."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    subprocess.run(["dpkg-deb", "-x", deb, root], check=True)


def deb_field(deb, field):
    return subprocess.run(["dpkg-deb", "-f", deb, field], check=True, capture_output=True,
                          text=True).stdout.strip()


# --- licences ------------------------------------------------------------------------------

def copyright_text(name, root, debs, work):
    """The package's copyright file. Some packages symlink /usr/share/doc/<name> to a
    sibling's directory (gcc-12-locales -> gcc-12-base); then that sibling is fetched too."""
    doc = root / "usr/share/doc" / name
    if doc.is_symlink():
        sibling = Path(doc.readlink()).name
        sibling_root = work / "extract" / sibling
        extract(download([sibling], debs)[sibling], sibling_root)
        doc = sibling_root / "usr/share/doc" / sibling
    path = doc / "copyright"
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""


def dep5_field(stanza, name):
    """Value of a (possibly multi-line) field of a DEP-5 stanza, or ''."""
    match = re.search(rf"^{name}:[ \t]*(.*(?:\n[ \t]+.*)*)", stanza, re.M)
    return match.group(1).strip() if match else ""


def dep5_licence(text):
    """License: of a machine-readable (DEP-5) copyright file for the French catalog's
    source (po/fr.po, or po/fr/<domain>.po in KDE). As DEP-5 specifies, `*` also matches
    '/' and the last stanza whose Files: match wins."""
    licence = None
    for stanza in re.split(r"\n\s*\n", text):
        files, licence_field = dep5_field(stanza, "Files").split(), dep5_field(stanza, "License")
        if licence_field and any(fnmatch.fnmatchcase(path, pattern)
                                 for pattern in files for path in FRENCH_PO_PATHS):
            licence = licence_field.splitlines()[0]
    return licence


FREE_FORM_LICENCES = [  # (short name, pattern); the earliest match in the file wins
    ("LGPL", r"GNU (?:Lesser|Library) General Public License|\bLGPL"),
    ("GPL", r"GNU General Public License|\bGPL"),
    ("Apache", r"Apache License"),
    ("MIT", r"\bMIT\b|Permission is hereby granted, free of charge"),
    ("BSD", r"\bBSD\b|Redistribution and use in source and binary forms"),
    ("ISC", r"\bISC\b"),
]


def free_form_licence(text):
    """Guess a short licence name from the first licence mentioned in a free-form file."""
    hits = []
    for name, pattern in FREE_FORM_LICENCES:
        match = re.search(pattern, text)
        if match:
            hits.append((match.start(), name, match.end()))
    if not hits:
        return None
    _, name, end = min(hits)
    if name not in ("GPL", "LGPL", "Apache"):
        return name
    # the version follows the name: "GPL-3", "GPLv2", "License, version 2.1 ... or any later"
    after = text[end:end + 250]
    version = (re.match(r"[-v ]?(\d(?:\.\d)?)", after)
               or re.search(r"[Vv]ersion (\d(?:\.\d)?)", after)
               or re.search(r"common-licenses/L?GPL-(\d(?:\.\d)?)", after))
    if not version:
        return name
    later = re.search(r"or \(?at your option\)? any later|or later|\+", after[:200])
    return f"{name}-{version.group(1)}{'+' if later else ''}"


def licence_of(text):
    return dep5_licence(text) or free_form_licence(text) or "see copyright"


# --- cleaning ------------------------------------------------------------------------------

def closed_tags(*texts):
    """Names of tags closed somewhere in the texts (`</b>`): markup, not placeholders."""
    return {m.group(2).lower() for text in texts for m in TAG.finditer(text) if m.group(1)}


def strip_markup(text, markup):
    """Drop HTML/Pango/KDE markup but keep placeholders: a tag is markup when its name is
    in `markup` (closed in the string or its translation), it is self-closing, carries
    attributes or is a known block tag; a lone `<file>` in a usage message stays."""
    def replace(match):
        slash, name, attrs, self_closing = match.groups()
        name = name.lower()
        if not (slash or attrs or self_closing or name in markup or name in BLOCK_TAGS):
            return match.group(0)
        return " " if name in BLOCK_TAGS else ""

    return TAG.sub(replace, STYLE.sub(" ", text))


def vocabulary(texts):
    """Lower-cased words that occur without an accelerator marker somewhere in the texts."""
    return {w.lower() for text in texts for w in BARE_WORD.findall(text)}


def strip_accelerators(text, known_words, translation):
    """`_File` -> `File`, `Ou_vrir` -> `Ouvrir` when the bare word is used elsewhere in the
    catalogs, so `base_addr` survives. A marker inside a word copied verbatim into the
    translation (`death_date`) or inside an upper-case word (`EXPIRE_DATE`) is an identifier."""
    copied = {m.group(0) for m in ACCEL.finditer(translation)}

    def replace(match):
        head, tail = match.groups()
        bare = head + tail
        identifier = head and (match.group(0) in copied or bare.isupper())
        return bare if bare.lower() in known_words and not identifier else match.group(0)

    return ACCEL.sub(replace, ACCEL_HINT.sub("", text))


def strip_gettext_context(msgid, msgstr):
    """Drop a `context|` prefix that some programs (Gramps) put in the msgid itself; the
    translation, which never has it, shows it is not text."""
    match = GETTEXT_CONTEXT.match(msgid)
    return msgid[match.end():] if match and "|" not in msgstr else msgid


def normalise(text, translation, known_words):
    """One clean line: markup, accelerators and entities resolved, invisible format
    characters removed, all whitespace (newlines, tabs, no-break spaces) made single spaces."""
    text = strip_markup(text, closed_tags(text, translation))
    text = strip_accelerators(text, known_words, translation)
    text = ENTITY.sub(lambda m: html.unescape(m.group(0)), text)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return " ".join(LITERAL_NEWLINE.sub(" ", text).split())


def plain_words(text):
    """Tokens that are words once edge punctuation is removed (not %s, {n}, <file>, 3.5)."""
    return [t for t in (tok.strip(EDGE_PUNCT) for tok in text.split()) if PLAIN_WORD.fullmatch(t)]


def comparable(text):
    return "".join(ch for ch in text.lower() if ch.isalpha())


def keep_pair(en, fr):
    """Sentence-like, translated, cleanly decoded pairs only."""
    for side in (en, fr):
        if len(side.split()) > MAX_TOKENS or len(plain_words(side)) < MIN_WORDS:
            return False
        if "\ufffd" in side or any(unicodedata.category(ch) == "Cc" for ch in side):
            return False
    a, b = comparable(en), comparable(fr)
    return a != b and difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() < NEAR_IDENTICAL


def package_entries(root):
    """(msgid, msgstr) of every translated entry in the package's French catalogs."""
    return [(msgid, msgstr)
            for mo in sorted((root / CATALOG_DIR).glob("*.mo"))
            for _, msgid, msgstr in read_mo(mo) if msgstr.strip()]


def clean_pairs(entries, en_words, fr_words):
    """Sorted, deduplicated clean (en, fr) pairs of one package's entries."""
    pairs = set()
    for msgid, msgstr in entries:
        msgid = strip_gettext_context(msgid, msgstr)
        en, fr = normalise(msgid, msgstr, en_words), normalise(msgstr, msgid, fr_words)
        if keep_pair(en, fr):
            pairs.add((en, fr))
    return sorted(pairs)


# --- splitting -----------------------------------------------------------------------------

def assemble(by_package, split_of):
    """Pairs of each split. A pair or English sentence already taken by test (then valid)
    is dropped from the later splits, so eval sentences never occur in training."""
    splits, seen_pairs, seen_en = {}, set(), set()
    for split in ("test", "valid", "train"):
        pairs, split_en = [], set()
        for package in sorted(p for p in by_package if split_of[p] == split):
            for en, fr in by_package[package]:
                if (en, fr) not in seen_pairs and en not in seen_en:
                    seen_pairs.add((en, fr))
                    split_en.add(en)
                    pairs.append((en, fr, package))
        seen_en |= split_en
        splits[split] = pairs
    return splits


def choose_eval_packages(by_package):
    """Assign packages to test, then valid, from a seeded shuffle of the mid-sized ones,
    adding a package only while the split stays under EVAL_MAX; the rest is train."""
    candidates = sorted(p for p, pairs in by_package.items() if len(pairs) <= EVAL_PACKAGE_MAX)
    random.Random(SEED).shuffle(candidates)
    split_of = dict.fromkeys(by_package, "train")
    for split in ("test", "valid"):
        for package in candidates:
            if split_of[package] != "train":
                continue
            split_of[package] = split
            size = len(assemble(by_package, split_of)[split])
            if size > EVAL_MAX:
                split_of[package] = "train"
            elif size >= EVAL_TARGET:
                break
        else:
            raise SystemExit(f"could not fill {split} with {EVAL_TARGET}-{EVAL_MAX} pairs")
    return split_of


# --- output --------------------------------------------------------------------------------

def write_gz(path, lines):
    """UTF-8 lines, gzip with a zero mtime and no file name so reruns are byte-identical."""
    with open(path, "wb") as raw, gzip.GzipFile("", "wb", fileobj=raw, mtime=0) as gz:
        gz.write("".join(line + "\n" for line in lines).encode("utf-8"))


def write_outputs(out, splits, info):
    out.mkdir(parents=True, exist_ok=True)
    for split, pairs in splits.items():
        write_gz(out / f"{split}.en.gz", [en for en, _, _ in pairs])
        write_gz(out / f"{split}.fr.gz", [fr for _, fr, _ in pairs])
    rows = package_rows(splits, info)
    with open(out / "pairs_by_package.tsv", "w", encoding="utf-8") as f:
        f.write("split\tpackage\tversion\tlicence\tpairs\n")
        f.writelines("\t".join(map(str, row)) + "\n" for row in rows)
    (out / "SOURCES.md").write_text(sources_md(splits, rows), encoding="utf-8")


def package_rows(splits, info):
    """(split, package, version, licence, pairs) for every package that contributes pairs."""
    rows = []
    for split in SPLITS:
        counts = {}
        for _, _, package in splits[split]:
            counts[package] = counts.get(package, 0) + 1
        rows += [(split, p, *info[p], n) for p, n in sorted(counts.items())]
    return rows


def sources_md(splits, rows):
    total = sum(len(pairs) for pairs in splits.values())
    lines = [
        "# EN–FR sentence pairs from Debian gettext catalogs",
        "",
        "English source strings (msgid) and their French translations (msgstr) from the",
        f"`/{CATALOG_DIR}/*.mo` catalogs of {len(rows)} Debian 12 (bookworm) binary packages,",
        "fetched with `apt-get download` and unpacked with `dpkg-deb -x` (nothing installed).",
        "Domain: software user interfaces, messages and command-line help. Rebuild with",
        "",
        "    python3 fairseq_compress/corpus/build_en_fr.py --work WORKDIR --out data-bin/raw/en_fr",
        "",
        "(package list: `fairseq_compress/corpus/fr_mo_packages.txt`; the versions below are those",
        "downloaded; the same .debs give byte-identical files).",
        "",
        "Cleaning: plural entries give their singular forms; empty and untranslated",
        f"(identical or difflib ratio ≥ {NEAR_IDENTICAL}) entries are dropped; markup tags, menu",
        "accelerators (`_File`, `&Open`; not identifiers such as `base_addr`) and HTML entities",
        "are resolved; all whitespace becomes single spaces (one segment a line); placeholders",
        f"(`%s`, `%(name)s`, `{{n}}`, `<file>`) are kept as they are; each side has at least",
        f"{MIN_WORDS} plain words and at most {MAX_TOKENS} tokens; exact duplicates are removed.",
        "The split is by package (test and valid: a seeded draw of packages with at most",
        f"{EVAL_PACKAGE_MAX:,} pairs): no package, no (en, fr) pair and no English sentence is in",
        "two splits.",
        "",
        "| split | pairs |",
        "| --- | ---: |",
        *(f"| {split} | {len(splits[split]):,} |" for split in SPLITS),
        f"| total | {total:,} |",
        "",
        "Licences: each translation carries the licence of its package. The short name is the",
        "`License:` of the machine-readable (DEP-5) copyright file's stanza covering",
        "`po/fr.po`, otherwise the first licence named in a free-form file; see each package's",
        "`/usr/share/doc/<package>/copyright` for the full terms.",
        "",
        "| split | package | version | licence | pairs |",
        "| --- | --- | --- | --- | ---: |",
        *(f"| {s} | {p} | {v} | {lic} | {n:,} |" for s, p, v, lic, n in rows),
        "",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="download/extract directory")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--packages", type=Path, default=DEFAULT_PACKAGES)
    args = parser.parse_args()
    start = time.time()

    names = read_package_list(args.packages)
    debs = download(names, args.work / "debs")
    entries, info = {}, {}
    for name in names:
        root = args.work / "extract" / name
        extract(debs[name], root)
        entries[name] = package_entries(root)
        info[name] = (deb_field(debs[name], "Version"),
                      licence_of(copyright_text(name, root, args.work / "debs", args.work)))

    # Accelerators are recognised against the words of all catalogs: one catalog alone
    # often lacks the bare word ("_onglet").
    en_words = vocabulary(msgid for package in entries.values() for msgid, _ in package)
    fr_words = vocabulary(msgstr for package in entries.values() for _, msgstr in package)
    by_package = {name: clean_pairs(entries[name], en_words, fr_words) for name in names}

    # No cap per package is needed: the largest, gcc-12-locales, is ~14% of train.
    splits = assemble(by_package, choose_eval_packages(by_package))
    write_outputs(args.out, splits, info)

    counts = ", ".join(f"{s} {len(splits[s]):,}" for s in SPLITS)
    print(f"{len(names)} packages -> {counts} pairs in {time.time() - start:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
