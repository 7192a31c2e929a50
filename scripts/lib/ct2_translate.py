"""Translate raw text with a CTranslate2 model directory (fairseq-compress export --format
ctranslate2) as scripts/eval_bleu.sh does with fairseq-generate: the directory's sentencepiece
model, beam search, batches of sentences sorted by length, hypotheses capped per batch at
max_len_a x the batch's longest source (with its </s>) + max_len_b tokens, as fairseq caps them.
Writes detokenized hypotheses in input order; logs fairseq-generate's speed line (translation
time only, model loading excluded) so the same parsers read both."""
import argparse
import os
import sys
import time

import ctranslate2
import sentencepiece


def translate(model_dir, sentences, beam, batch_size, max_len_a, max_len_b, threads):
    """(detokenized hypotheses in input order, seconds spent translating)."""
    spm = sentencepiece.SentencePieceProcessor(model_file=os.path.join(model_dir, "spm.model"))
    translator = ctranslate2.Translator(model_dir, device="cpu", intra_threads=threads, inter_threads=1)
    pieces = [spm.encode(sentence, out_type=str) for sentence in sentences]
    order = sorted(range(len(pieces)), key=lambda i: len(pieces[i]))
    hypotheses = [None] * len(pieces)
    seconds = 0.0
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        longest = max(len(pieces[i]) for i in batch) + 1  # fairseq's source length counts </s>
        began = time.perf_counter()
        results = translator.translate_batch([pieces[i] for i in batch], beam_size=beam, max_batch_size=batch_size,
                                             max_decoding_length=int(max_len_a * longest + max_len_b))
        seconds += time.perf_counter() - began
        for i, result in zip(batch, results):
            hypotheses[i] = spm.decode(result.hypotheses[0])
    return hypotheses, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="CTranslate2 model directory (with spm.model)")
    parser.add_argument("--src", required=True, help="raw source text, one sentence per line")
    parser.add_argument("--out", required=True, help="detokenized hypotheses to write")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-len-a", type=float, default=1.5)
    parser.add_argument("--max-len-b", type=int, default=10)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 0)),
                        help="CTranslate2 intra-op threads (default: OMP_NUM_THREADS, else CTranslate2's default)")
    args = parser.parse_args()
    for flag, path in (("--model", os.path.join(args.model, "model.bin")), ("--src", args.src)):
        if not os.path.isfile(path):
            sys.exit(f"error: {flag}: {path} does not exist")
    with open(args.src, encoding="utf-8") as f:
        sentences = [line.rstrip("\n") for line in f]
    hypotheses, seconds = translate(args.model, sentences, args.beam, args.batch_size, args.max_len_a,
                                    args.max_len_b, args.threads)
    with open(args.out, "w", encoding="utf-8") as f:
        f.writelines(hypothesis + "\n" for hypothesis in hypotheses)
    print(f"CTranslate2 | Translated {len(sentences)} sentences in {seconds:.1f}s "
          f"({len(sentences) / seconds:.2f} sentences/s)", file=sys.stderr)


if __name__ == "__main__":
    main()
