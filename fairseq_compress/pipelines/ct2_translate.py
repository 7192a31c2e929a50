"""Translate raw text with a CTranslate2 model directory (fairseq-compress export --format
ctranslate2) as scripts/eval_bleu.sh does with fairseq-generate: the directory's sentencepiece
model, then fairseq_compress.deploy.ct2_translation's batches and caps. Writes detokenized
hypotheses in input order; logs fairseq-generate's speed line (translation time only, model loading
excluded) so the same parsers read both."""
import argparse
import os
import sys

import sentencepiece

from fairseq_compress.deploy import SPM_MODEL
from fairseq_compress.deploy.ct2_translation import ct2_translator, translate_pieces
from fairseq_compress.errors import ConfigError


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="CTranslate2 model directory (with spm.model)")
    parser.add_argument("--src", required=True, help="raw source text, one sentence per line")
    parser.add_argument("--out", required=True, help="detokenized hypotheses to write")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-len-a", type=float, default=1.5)
    parser.add_argument("--max-len-b", type=int, default=10)
    parser.add_argument("--use-vmap", action="store_true",
                        help="restrict each batch's target vocabulary with the model's vocabulary map (export --vmap)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 0)),
                        help="CTranslate2 intra-op threads (default: OMP_NUM_THREADS, else CTranslate2's default)")
    args = parser.parse_args()
    if not os.path.isfile(args.src):
        sys.exit(f"error: --src: {args.src} does not exist")
    if args.use_vmap and not os.path.isfile(os.path.join(args.model, "vmap.txt")):
        sys.exit(f"error: --use-vmap: {args.model} has no vocabulary map (export it with fairseq-compress export --vmap)")
    try:
        translator = ct2_translator(args.model, args.threads)
    except ConfigError as error:
        sys.exit(f"error: {error}")
    spm = sentencepiece.SentencePieceProcessor(model_file=os.path.join(args.model, SPM_MODEL))
    with open(args.src, encoding="utf-8") as f:
        pieces = [spm.encode(line.rstrip("\n"), out_type=str) for line in f]
    hypotheses, seconds = translate_pieces(translator, pieces, args.beam, args.batch_size, args.max_len_a,
                                           args.max_len_b, use_vmap=args.use_vmap)
    with open(args.out, "w", encoding="utf-8") as f:
        f.writelines(spm.decode(hypothesis) + "\n" for hypothesis in hypotheses)
    print(f"CTranslate2 | Translated {len(pieces)} sentences in {seconds:.1f}s "
          f"({len(pieces) / seconds:.2f} sentences/s)", file=sys.stderr)


if __name__ == "__main__":
    main()
