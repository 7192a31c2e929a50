"""fp32 vs int8 generation speed and BLEU, measured in one run.

Translates the shipped test split with the stock fairseq-generate (through
scripts/eval_bleu.sh: beam 5, batches of 64 sentences, on CPU) twice per
repeat, fp32 then ``--model-overrides "{'int8_inference': True}"``, alternating
so machine noise hits both alike. Prints sentences/s of each (fairseq's own
generation timer, model loading excluded), the speed-up (target >= 2.0) and
the detokenized sacreBLEU of both (target: drop <= 0.5).

    .venv/bin/python scripts/benchmarks/int8_inference.py --ckpt CKPT [--data data-bin/en_fr] [--repeats 2]
"""
import argparse
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODES = {"fp32": [], "int8": ["--model-overrides", "{'int8_inference': True}"]}


def translate(ckpt, data, extra):
    """(BLEU, sentences/s) of one eval_bleu.sh run."""
    result = subprocess.run(["bash", str(ROOT / "scripts/eval_bleu.sh"), str(ckpt), str(data), "--json", "--", *extra],
                            capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"error: eval_bleu.sh failed: {result.stderr.strip().splitlines()[-1:]}")
    log = Path(f"{str(ckpt)[:-3]}.test.hyp.log").read_text()
    speed = float(re.findall(r"\(([\d.]+) sentences/s", log)[-1])
    return json.loads(result.stdout)["bleu"], speed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, type=Path, help="a trained transformer_l*_h* checkpoint")
    parser.add_argument("--data", type=Path, default=ROOT / "data-bin/en_fr")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if not args.ckpt.is_file():
        sys.exit(f"error: --ckpt {args.ckpt}: no such file")
    speeds, bleus = {mode: [] for mode in MODES}, {}
    for _ in range(args.repeats):
        for mode, extra in MODES.items():
            bleus[mode], speed = translate(args.ckpt, args.data, extra)
            speeds[mode].append(speed)
    median = {mode: statistics.median(values) for mode, values in speeds.items()}
    for mode in MODES:
        print(f"{mode}: {median[mode]:.2f} sentences/s (runs: {speeds[mode]}), test BLEU {bleus[mode]:.2f}")
    print(f"int8 speed-up: {median['int8'] / median['fp32']:.2f}x (target >= 2.0); "
          f"BLEU drop: {bleus['fp32'] - bleus['int8']:.2f} (target <= 0.5)")


if __name__ == "__main__":
    main()
