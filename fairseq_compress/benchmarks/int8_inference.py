"""fp32 vs int8 generation speed and BLEU, measured in one run.

Translates the shipped test split with the stock fairseq-generate (through
scripts/eval_bleu.sh: beam 5, batches of 64 sentences, on CPU) twice per
repeat, fp32 then ``--model-overrides "{'int8_inference': True}"``, alternating
so machine noise hits both alike. Prints sentences/s of each (fairseq's own
generation timer, model loading excluded), the speed-up (target >= 2.0) and
the detokenized sacreBLEU of both (target: drop <= 0.5).

    .venv/bin/python -m fairseq_compress.benchmarks.int8_inference --ckpt CKPT [--data data-bin/en_fr] [--repeats 2]
"""
import argparse
import sys
from pathlib import Path

from fairseq_compress.studies.stages import ROOT
from fairseq_compress.studies.translation_race import INT8, race


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, type=Path, help="a trained transformer_l*_h* checkpoint")
    parser.add_argument("--data", type=Path, default=ROOT / "data-bin/en_fr")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if not args.ckpt.is_file():
        sys.exit(f"error: --ckpt {args.ckpt}: no such file")
    results = race({"fp32": (args.ckpt, []), "int8": (args.ckpt, INT8)}, args.data, args.repeats)
    (fp32_bleu, fp32_speed), (int8_bleu, int8_speed) = results["fp32"], results["int8"]
    print(f"int8 speed-up: {int8_speed / fp32_speed:.2f}x (target >= 2.0); "
          f"BLEU drop: {fp32_bleu - int8_bleu:.2f} (target <= 0.5)")


if __name__ == "__main__":
    main()
