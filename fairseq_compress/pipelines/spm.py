"""Sentencepiece train / encode / decode for the bash pipelines.

The pip ``sentencepiece`` wheel ships the library but not the ``spm_*``
command-line tools, so the pipelines call this thin wrapper instead.
"""
import argparse
import sys

import sentencepiece as spm

# Enough sentences for a good 8k-32k vocabulary; larger corpora (WMT14: 36M
# pairs) are sampled down to this instead of loaded whole.
MAX_TRAINING_SENTENCES = 2_000_000


def train(args):
    spm.SentencePieceTrainer.train(
        input=args.input,
        model_prefix=args.model_prefix,
        vocab_size=args.vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        input_sentence_size=MAX_TRAINING_SENTENCES,
        shuffle_input_sentence=True,
        # fairseq's dictionary adds its own <s>, <pad>, </s>, <unk>.
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        num_threads=args.threads,
        minloglevel=2,
    )


def encode(args):
    model = spm.SentencePieceProcessor(model_file=args.model)
    for line in sys.stdin:
        sys.stdout.write(" ".join(model.encode(line.rstrip("\n"), out_type=str)) + "\n")


def decode(args):
    model = spm.SentencePieceProcessor(model_file=args.model)
    for line in sys.stdin:
        sys.stdout.write(model.decode(line.split()) + "\n")


def check_dict(args):
    """Exit 2 with one line unless every symbol of each fairseq dictionary is a piece of the model."""
    model = spm.SentencePieceProcessor(model_file=args.model)
    pieces = {model.id_to_piece(i) for i in range(model.get_piece_size())}
    for path in args.dict:
        with open(path, encoding="utf-8") as f:
            symbols = [line.split(" ")[0] for line in f if not line.startswith("madeupword")]
        unknown = [s for s in symbols if s not in pieces]
        if unknown:
            sys.exit(f"error: {path} does not match {args.model}: {len(unknown)} of {len(symbols)} dictionary "
                     f"symbols (e.g. {', '.join(map(repr, unknown[:3]))}) are not pieces of the sentencepiece "
                     "model; use the dictionary and model that one prepare script wrote together")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train")
    train_parser.add_argument("--input", required=True, help="comma-separated text files")
    train_parser.add_argument("--model-prefix", required=True)
    train_parser.add_argument("--vocab-size", type=int, default=8000)
    train_parser.add_argument("--threads", type=int, default=2)
    train_parser.set_defaults(run=train)
    for name, run in (("encode", encode), ("decode", decode)):
        sub = commands.add_parser(name, help=f"{name} stdin to stdout")
        sub.add_argument("--model", required=True)
        sub.set_defaults(run=run)
    check = commands.add_parser("check-dict", help="every dictionary symbol is a piece of the model")
    check.add_argument("--model", required=True)
    check.add_argument("--dict", required=True, nargs="+")
    check.set_defaults(run=check_dict)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
