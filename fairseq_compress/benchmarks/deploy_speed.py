"""fairseq-generate against CTranslate2, the runtime users deploy fairseq translation models on,
measured in one run.

Exports CKPT (and --shrunk CKPT, a fairseq-compress shrink output, fine-tuned or not) with
``fairseq-compress export --format ctranslate2`` in float32 and int8, then translates the test
split with each contender in turn, --repeats times (fairseq_compress.studies.translation_race: beam 5, batches of 64,
the same length caps, one thread with OMP_NUM_THREADS=1): stock fairseq-generate fp32, fairseq-
generate with the plugin's int8 (--model-overrides "{'int8_inference': True}"), CTranslate2
float32 and int8. Prints sentences/s (median), the ratio to fairseq fp32 of the same model, BLEU
and MB on disk (the fairseq checkpoint's model tensors; the CTranslate2 directory), and with
--shrunk the target: CTranslate2 int8 of the shrunk model >= 1.5x CTranslate2 int8 of the dense
one at <= 1 BLEU lost. --csv writes the rows.

    OMP_NUM_THREADS=1 .venv/bin/python -m fairseq_compress.benchmarks.deploy_speed --ckpt CKPT [--shrunk CKPT]
        [--data data-bin/en_fr] [--out checkpoints/deploy_speed] [--repeats 2] [--csv docs/results/deploy_speed.csv]
"""
import argparse
import subprocess
import sys
from pathlib import Path

from fairseq_compress.studies.stages import ROOT, write_csv
from fairseq_compress.studies.translation_race import INT8, race

from fairseq_compress.compress.size import deployed_bytes

BIN = Path(sys.executable).parent


def compress_tool(*args) -> str:
    result = subprocess.run([str(BIN / "fairseq-compress"), *map(str, args)], capture_output=True, text=True)
    if result.returncode:
        sys.exit(result.stderr.strip().splitlines()[-1])
    return result.stdout


def contenders(name: str, ckpt: Path, data: Path, out: Path):
    """{label: (path, fairseq-generate args)} of one checkpoint: fairseq fp32 / int8, CTranslate2 float32 / int8."""
    exported = {}
    for quantization in ("float32", "int8"):
        exported[quantization] = out / f"{name}_ct2_{quantization}"
        if not (exported[quantization] / "model.bin").exists():
            compress_tool("export", "--format", "ctranslate2", "--path", ckpt, "--data", data,
                          "--out", exported[quantization], "--quantization", quantization, "--force")
    return {f"{name} fairseq fp32": (ckpt, []), f"{name} fairseq int8": (ckpt, INT8),
            f"{name} CTranslate2 float32": (exported["float32"], []),
            f"{name} CTranslate2 int8": (exported["int8"], [])}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, type=Path, help="a trained translation checkpoint")
    parser.add_argument("--shrunk", type=Path, help="the same model after fairseq-compress shrink (+ fine-tuning)")
    parser.add_argument("--data", type=Path, default=ROOT / "data-bin/en_fr")
    parser.add_argument("--out", type=Path, default=ROOT / "checkpoints/deploy_speed")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--csv", type=Path, help="write one row per contender here")
    args = parser.parse_args()
    for flag, path in (("--ckpt", args.ckpt), ("--shrunk", args.shrunk)):
        if path is not None and not path.is_file():
            sys.exit(f"error: {flag} {path}: no such file")
    if args.repeats < 1:
        sys.exit(f"error: --repeats must be >= 1, got {args.repeats}")
    args.out.mkdir(parents=True, exist_ok=True)
    race_of = contenders("dense", args.ckpt, args.data, args.out)
    if args.shrunk:
        race_of.update(contenders("shrunk", args.shrunk, args.data, args.out))
    results = race(race_of, args.data, args.repeats)
    rows = []
    for label, (path, _) in race_of.items():
        bleu, speed = results[label]
        baseline = results[f"{label.split()[0]} fairseq fp32"][1]
        rows.append({"contender": label, "sentences_per_s": round(speed, 2), "vs_fairseq_fp32": round(speed / baseline, 2),
                     "bleu": bleu, "mb": round(deployed_bytes(str(path)) / 1e6, 2)})
        print(f"{label}: {speed:.2f} sentences/s ({speed / baseline:.2f}x fairseq fp32), BLEU {bleu:.2f}, "
              f"{rows[-1]['mb']:.2f} MB")
    if args.shrunk:
        (dense_bleu, dense_speed), (bleu, speed) = results["dense CTranslate2 int8"], results["shrunk CTranslate2 int8"]
        print(f"CTranslate2 int8, shrunk vs dense: {speed / dense_speed:.2f}x sentences/s (target >= 1.5x), "
              f"BLEU {dense_bleu - bleu:+.2f} lost (target <= 1.0)")
    if args.csv:
        write_csv(args.csv, rows)


if __name__ == "__main__":
    main()
