"""Bytes on disk of a fully iPQ'd transformer_l6_h512 against its fp32 weights (the checkpoint without
optimizer state). Target: >= 20x smaller. Without --ckpt it trains transformer_l6_h512 for a few updates
on --data (scripts/train_mt.sh): the size does not depend on how well the model is trained. Prints
fairseq-compress ipq's report and the component table of both files; appends the figures to --csv.

    .venv/bin/python -m fairseq_compress.benchmarks.ipq_size [--ckpt CKPT] [--data data-bin/en_fr] [--out checkpoints/ipq_size]
"""
import argparse
import csv
import json
import sys
from pathlib import Path

from fairseq_compress.studies.stages import ROOT, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, help="a translation checkpoint (default: train one)")
    parser.add_argument("--data", type=Path, default=ROOT / "data-bin/en_fr")
    parser.add_argument("--out", type=Path, default=ROOT / "checkpoints/ipq_size")
    parser.add_argument("--csv", type=Path, default=ROOT / "docs/results/ipq_size.csv", help="appended to")
    args = parser.parse_args()
    ckpt = args.ckpt
    if ckpt is None:
        if not args.data.is_dir():
            sys.exit(f"error: --data {args.data} is not a directory (prepare it with scripts/prepare_mt.sh)")
        run(["bash", ROOT / "scripts/train_mt.sh", args.data, args.out / "train", "--arch", "transformer_l6_h512",
             "--max-update", "20", "--max-tokens", "2048"])
        ckpt = args.out / "train/checkpoint_best.pt"
    elif not ckpt.is_file():
        sys.exit(f"error: --ckpt {ckpt}: no such file")
    args.out.mkdir(parents=True, exist_ok=True)
    ipq, report = args.out / "ipq.pt", args.out / "ipq.json"
    with open(report, "w") as f:
        run(["fairseq-compress", "ipq", "--path", ckpt, "--config", ROOT / "fairseq_compress/config/ipq/transformer.yaml",
             "--out", ipq, "--force"], stdout=f)
    print(report.read_text(), end="")
    for path in (ckpt, ipq):
        run(["fairseq-compress", "size", "--path", path], stdout=None)
    sizes = json.loads(report.read_text())
    new = not args.csv.exists()
    with open(args.csv, "a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(["checkpoint", "params", "fp32_model_bytes", "ipq_file_bytes", "ratio_vs_fp32_model"])
        name = ckpt.resolve().relative_to(ROOT) if ckpt.resolve().is_relative_to(ROOT) else ckpt
        writer.writerow([name, sizes["fp32_model_bytes"] // 4, sizes["fp32_model_bytes"], sizes["file_bytes"],
                         sizes["ratio_vs_fp32_model"]])
    print(f"iPQ file is {sizes['ratio_vs_fp32_model']}x smaller than the fp32 weights (target >= 20x)")


if __name__ == "__main__":
    main()
