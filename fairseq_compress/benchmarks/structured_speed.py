"""Dense vs shrunk (fairseq-compress shrink) generation speed and BLEU, measured in one run.

Shrinks CKPT (a trained transformer_l*_h*) to --heads-keep / --ffn-keep, fine-tunes the shrunk
model for --finetune-updates updates (scripts/train_mt.sh --restore-file, lr 5e-4, no warmup;
0: none), then translates the test split with the stock fairseq-generate, alternating dense
fp32, shrunk fp32 and shrunk int8 (fairseq_compress.studies.translation_race). Prints sentences/s of each, the
speed-ups over dense fp32 (targets on transformer_l3_h256 with 50 % of heads and FFN kept,
fine-tuned: >= 1.6x in fp32 at <= 1.0 BLEU lost; >= 2.5x in int8) and the BLEU of each.

    .venv/bin/python -m fairseq_compress.benchmarks.structured_speed --ckpt CKPT [--data data-bin/en_fr]
        [--heads-keep 0.5] [--ffn-keep 0.5] [--finetune-updates 300] [--out checkpoints/structured_speed] [--repeats 2]
"""
import argparse
import subprocess
import sys
from pathlib import Path

from fairseq_compress.studies.stages import ROOT
from fairseq_compress.studies.translation_race import INT8, race


def run(cmd):
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"error: {' '.join(Path(str(c)).name for c in cmd[:2])} failed: {result.stderr.strip().splitlines()[-1:]}")
    return result.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, type=Path, help="a trained transformer_l*_h* checkpoint")
    parser.add_argument("--data", type=Path, default=ROOT / "data-bin/en_fr")
    parser.add_argument("--heads-keep", type=float, default=0.5)
    parser.add_argument("--ffn-keep", type=float, default=0.5)
    parser.add_argument("--finetune-updates", type=int, default=300)
    parser.add_argument("--out", type=Path, default=ROOT / "checkpoints/structured_speed")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if not args.ckpt.is_file():
        sys.exit(f"error: --ckpt {args.ckpt}: no such file")
    if args.finetune_updates < 0:
        sys.exit(f"error: --finetune-updates must be >= 0, got {args.finetune_updates}")
    bin_dir = Path(sys.executable).parent
    args.out.mkdir(parents=True, exist_ok=True)
    shrunk = args.out / f"shrunk_h{args.heads_keep}_f{args.ffn_keep}.pt"
    if not shrunk.exists():
        run([bin_dir / "fairseq-compress", "shrink", "--path", args.ckpt, "--out", shrunk,
             "--heads-keep", args.heads_keep, "--ffn-keep", args.ffn_keep])
    if args.finetune_updates:
        arch = run([bin_dir / "fairseq-compress", "info", "--path", args.ckpt]).split()[1]
        save_dir = args.out / f"{shrunk.stem}_ft{args.finetune_updates}"
        run(["bash", ROOT / "scripts/train_mt.sh", args.data, save_dir, "--arch", arch, "--max-update",
             args.finetune_updates, "--lr", "0.0005", "--warmup", "1", "--max-tokens", "2048", "--",
             "--restore-file", shrunk, "--reset-optimizer", "--reset-dataloader", "--reset-meters",
             "--reset-lr-scheduler"])
        shrunk = save_dir / "checkpoint_last.pt"
    results = race({"dense fp32": (args.ckpt, []), "shrunk fp32": (shrunk, []), "shrunk int8": (shrunk, INT8)},
                   args.data, args.repeats)
    dense_bleu, dense_speed = results["dense fp32"]
    for name, target in (("shrunk fp32", 1.6), ("shrunk int8", 2.5)):
        bleu, speed = results[name]
        print(f"{name}: {speed / dense_speed:.2f}x the dense fp32 sentences/s (target >= {target}x), "
              f"BLEU {bleu:.2f} ({dense_bleu - bleu:+.2f} lost; target <= 1.0)")


if __name__ == "__main__":
    main()
