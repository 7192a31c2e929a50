"""Text steps of prepare_wmt14_en_fr.sh that the shell does badly.

sgm:   the segments of a WMT .sgm test file, one a line (what sacreBLEU reads
       from the same file, so our references equal sacreBLEU's wmt14/full).
clean: concatenate parallel corpora and drop the pairs Moses'
       clean-corpus-n.perl drops in fairseq's prepare-wmt14en2fr.sh (an empty
       side, a side over --max-len words, a length ratio over --max-ratio;
       fairseq counts BPE tokens, we count words, before sentencepiece).
       Moses itself is a Perl checkout that no package index ships, hence
       these few lines.
"""
import argparse
import gzip
import re
import sys

SEGMENT = re.compile(r"<seg[^>]*>(.*)</seg>")


def open_text(path, mode="rt"):
    return gzip.open(path, mode, encoding="utf-8") if path.endswith(".gz") else open(path, mode, encoding="utf-8")


def sgm(args):
    with open_text(args.input) as f:
        for line in f:
            match = SEGMENT.search(line)
            if match:
                sys.stdout.write(" ".join(match.group(1).split()) + "\n")


def keep(src_words, tgt_words, max_len, max_ratio):
    if not 1 <= src_words <= max_len or not 1 <= tgt_words <= max_len:
        return False
    return max(src_words, tgt_words) / min(src_words, tgt_words) <= max_ratio


def clean(args):
    kept = total = 0
    with open(args.out_src, "w", encoding="utf-8") as out_src, open(args.out_tgt, "w", encoding="utf-8") as out_tgt:
        for prefix in args.prefixes:
            with open_text(prefix[0]) as src, open_text(prefix[1]) as tgt:
                line_number = 0
                for line_number, (s, t) in enumerate(zip(src, tgt), 1):
                    total += 1
                    s, t = " ".join(s.split()), " ".join(t.split())
                    if keep(len(s.split()), len(t.split()), args.max_len, args.max_ratio):
                        out_src.write(s + "\n")
                        out_tgt.write(t + "\n")
                        kept += 1
                if src.readline() or tgt.readline():
                    sys.exit(f"error: {prefix[0]} and {prefix[1]} differ in length after line {line_number}: "
                             "the sides of a parallel corpus must be line-aligned")
    print(f"kept {kept} of {total} pairs", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    sgm_parser = commands.add_parser("sgm", help="segments of an .sgm file to stdout")
    sgm_parser.add_argument("input")
    sgm_parser.set_defaults(run=sgm)
    clean_parser = commands.add_parser("clean", help="concatenate and filter parallel corpora")
    clean_parser.add_argument("--pair", dest="prefixes", nargs=2, action="append", required=True,
                              metavar=("SRC_FILE", "TGT_FILE"), help="one corpus (plain or .gz); repeat for more")
    clean_parser.add_argument("--out-src", required=True)
    clean_parser.add_argument("--out-tgt", required=True)
    clean_parser.add_argument("--max-len", type=int, default=250)
    clean_parser.add_argument("--max-ratio", type=float, default=1.5)
    clean_parser.set_defaults(run=clean)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
