"""CTranslate2 with and without a vocabulary map (fairseq-compress export --vmap), measured in one
run: the checkpoint is exported in int8 once per map size (--maps TOP_K:FREQUENT ...), then the
test split is translated with each map and without one (the same directory, use_vmap off), at each
--beams, --repeats times, the contenders alternating (scripts/eval_bleu.sh [--vmap], one thread
with OMP_NUM_THREADS=1). Prints and writes BLEU and median sentences/s per contender and beam, and
the speed ratio to no map.

    OMP_NUM_THREADS=1 .venv/bin/python -m fairseq_compress.benchmarks.vmap_speed --ckpt CKPT --data data-bin/en_fr
        [--out checkpoints/vmap_speed] [--maps 20:100 50:300] [--beams 5 1] [--repeats 2]
        [--csv docs/results/vmap_speed.csv]
"""
import argparse
import statistics
import sys
from pathlib import Path

from fairseq_compress.studies.stages import make_once, write_csv
from fairseq_compress.studies.translation_race import translate


def map_size(text: str) -> tuple:
    top_k, _, frequent = text.partition(":")
    if not (top_k.isdigit() and frequent.isdigit() and int(top_k) >= 1):
        raise argparse.ArgumentTypeError(f"a map is TOP_K:FREQUENT with TOP_K >= 1, got {text!r}")
    return int(top_k), int(frequent)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, type=Path, help="a trained translation checkpoint")
    parser.add_argument("--data", required=True, type=Path, help="its data-bin (scripts/prepare_mt.sh)")
    parser.add_argument("--out", type=Path, default=Path("checkpoints/vmap_speed"))
    parser.add_argument("--maps", type=map_size, nargs="+", default=[(20, 100)], metavar="TOP_K:FREQUENT")
    parser.add_argument("--beams", type=int, nargs="+", default=[5, 1])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--csv", type=Path)
    args = parser.parse_args()
    if not args.ckpt.is_file():
        sys.exit(f"error: --ckpt {args.ckpt}: no such file")
    args.out.mkdir(parents=True, exist_ok=True)
    exported = {}
    for top_k, frequent in args.maps:
        exported[f"vmap {top_k}:{frequent}"] = directory = args.out / f"int8_vmap{top_k}_{frequent}"
        make_once(directory / "model.bin", ["fairseq-compress", "export", "--format", "ctranslate2", "--path", args.ckpt,
                                            "--data", args.data, "--out", directory, "--quantization", "int8",
                                            "--vmap", "--vmap-top-k", top_k, "--vmap-frequent", frequent, "--force"])
    contenders = {"no vmap": (next(iter(exported.values())), [])}
    contenders.update({name: (directory, ["--vmap"]) for name, directory in exported.items()})
    rows = []
    for beam in args.beams:
        speeds = {name: [] for name in contenders}
        bleus = {}
        for _ in range(args.repeats):
            for name, (directory, vmap) in contenders.items():
                bleus[name], speed = translate(directory, args.data, options=["--beam", str(beam), *vmap])
                speeds[name].append(speed)
        base = statistics.median(speeds["no vmap"])
        for name in contenders:
            median = statistics.median(speeds[name])
            rows.append({"beam": beam, "contender": name, "bleu": bleus[name], "sentences_per_s": round(median, 1),
                         "speed_vs_no_vmap": round(median / base, 2)})
            print(f"beam {beam}, {name}: BLEU {bleus[name]:.2f}, {median:.1f} sentences/s ({median / base:.2f}x) "
                  f"(runs: {speeds[name]})")
    if args.csv:
        write_csv(args.csv, rows)


if __name__ == "__main__":
    main()
