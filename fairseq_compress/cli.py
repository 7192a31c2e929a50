"""``fairseq-compress``: offline tools for checkpoints of fairseq models."""
import argparse
import json
import os
import sys


def _size(args):
    from .compress.size import checkpoint_size, format_size_report

    report = checkpoint_size(args.path)
    print(json.dumps(report) if args.json else format_size_report(report))


def build_parser():
    parser = argparse.ArgumentParser(prog="fairseq-compress", description=__doc__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    size = commands.add_parser(
        "size", help="bytes of a checkpoint on disk and by component (embeddings, attention, FFN, other)"
    )
    size.add_argument("--path", required=True, metavar="CKPT", help="fairseq checkpoint (.pt)")
    size.add_argument("--json", action="store_true", help="print one JSON object")
    size.set_defaults(run=_size)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if hasattr(args, "path") and not os.path.isfile(args.path):
        sys.exit(f"fairseq-compress {args.command}: error: --path {args.path}: no such file")
    try:
        args.run(args)
    except (ValueError, OSError) as error:
        sys.exit(f"fairseq-compress {args.command}: error: {error}")


if __name__ == "__main__":
    main()
