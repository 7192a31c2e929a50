"""Training throughput of the plugin's sweep archs vs the stock fairseq arch of the same shape.

``roberta_l6_h512`` (masked_lm) against stock ``roberta_base`` and
``transformer_l6_h512`` (translation) against stock ``transformer``, the stock
ones given the same size overrides (and, for the Transformer, the plugin's
pre-norm and shared embeddings), on the same batches. One update = forward +
criterion + backward + Adam step; plugin and stock take turns update by update
(and turns at going first) so machine noise hits them alike. Prints medians of
--steps updates after --warmup: words/s of each (target tokens, fairseq's
``wps``), the ratio plugin/stock (target >= 0.97), and the FLOP/s each reaches as a fraction of
this machine's matmul peak, both measured here: FLOPs of one update counted by
``torch.utils.flop_counter.FlopCounterMode``, the peak from timing large
square fp32 matmuls. Appends the rows to --csv.

    .venv/bin/python scripts/benchmarks/train_throughput.py [--steps 20] [--threads 2]
"""
import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

import torch
from fairseq import options, tasks
from torch.utils.flop_counter import FlopCounterMode

from drophead_overhead import USER_DIR, VOCAB, write_dictionaries

SAME_ROBERTA = ["--encoder-layers", "6", "--encoder-embed-dim", "512", "--encoder-ffn-embed-dim", "2048",
                "--encoder-attention-heads", "8"]
SAME_TRANSFORMER = ["--encoder-layers", "6", "--decoder-layers", "6", "--encoder-embed-dim", "512",
                    "--decoder-embed-dim", "512", "--encoder-ffn-embed-dim", "2048", "--decoder-ffn-embed-dim", "2048",
                    "--encoder-attention-heads", "8", "--decoder-attention-heads", "8",
                    "--encoder-normalize-before", "--decoder-normalize-before", "--share-all-embeddings"]
CASES = {  # task: (criterion, task args, plugin arch, stock arch + overrides, batch, length)
    "masked_lm": ("masked_lm", ["--tokens-per-sample", "512"], "roberta_l6_h512", ["roberta_base"] + SAME_ROBERTA,
                  16, 128),
    "translation": ("cross_entropy", ["-s", "en", "-t", "fr"], "transformer_l6_h512",
                    ["transformer"] + SAME_TRANSFORMER, 32, 32),
}


def build(task_name, criterion, task_args, arch_args, data_dir):
    parser = options.get_training_parser(default_task=task_name)
    args = options.parse_args_and_arch(parser, [str(data_dir), "--task", task_name, "--criterion", criterion,
                                                "--user-dir", str(USER_DIR), "--arch"] + arch_args + task_args)
    task = tasks.setup_task(args)
    torch.manual_seed(0)
    model = task.build_model(args).train()
    return model, task.build_criterion(args), torch.optim.Adam(model.parameters(), lr=1e-4)


def make_sample(task_name, batch, length, seed):
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(4, VOCAB, (batch, length), generator=generator)
    net_input = {"src_tokens": tokens, "src_lengths": torch.full((batch,), length)}
    if task_name == "translation":
        net_input["prev_output_tokens"] = torch.roll(tokens, 1, dims=1)
        target = tokens
    else:  # masked_lm: predictions on 15 % of positions, the rest is padding (index 1) in the target
        target = tokens.masked_fill(torch.rand(batch, length, generator=generator) >= 0.15, 1)
    return {"net_input": net_input, "target": target, "ntokens": batch * length, "nsentences": batch}


def update(model, criterion, optimizer, sample):
    loss, sample_size, _ = criterion(model, sample)
    (loss / sample_size).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def update_flops(model, criterion, optimizer, sample):
    with FlopCounterMode(display=False) as counter:
        update(model, criterion, optimizer, sample)
    return counter.get_total_flops()


def matmul_peak(threads, size=2048, repeats=10):
    """FLOP/s of the best of `repeats` fp32 size x size matmuls: what this CPU's BLAS reaches at best."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size ** 3 / best


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def time_pair(task_name, models, batch, length, warmup, steps):
    times = {name: [] for name in models}
    for i in range(warmup + steps):
        sample = make_sample(task_name, batch, length, seed=i)
        order = list(models.items())
        for name, parts in order if i % 2 else order[::-1]:  # who goes first alternates
            elapsed = _timed(lambda: update(*parts, sample))
            if i >= warmup:
                times[name].append(elapsed)
    return {name: statistics.median(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--csv", default=str(Path(__file__).parents[2] / "docs/results/train_throughput.csv"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peak = matmul_peak(args.threads)
    print(f"threads={args.threads} steps={args.steps} (median after {args.warmup} warm-up); "
          f"matmul peak {peak / 1e9:.1f} GFLOP/s")
    print(f"{'arch':<22}{'batch x len':>12}{'words/s':>10}{'GFLOP/s':>10}{'of peak':>9}{'plugin/stock':>14}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        write_dictionaries(Path(tmp))
        for task_name, (criterion, task_args, plugin, stock, batch, length) in CASES.items():
            models = {plugin: build(task_name, criterion, task_args, [plugin], Path(tmp)),
                      " ".join(stock[:1]): build(task_name, criterion, task_args, stock, Path(tmp))}
            sample = make_sample(task_name, batch, length, seed=0)
            flops = {name: update_flops(*parts, sample) for name, parts in models.items()}
            median = time_pair(task_name, models, batch, length, args.warmup, args.steps)
            words = batch * length
            ratio = median[stock[0]] / median[plugin]
            for name in models:
                achieved = flops[name] / median[name]
                rows.append({"task": task_name, "arch": name, "threads": args.threads, "batch": batch,
                             "length": length, "words_per_s": round(words / median[name]),
                             "gflop_per_s": round(achieved / 1e9, 1), "fraction_of_peak": round(achieved / peak, 3),
                             "plugin_over_stock": round(ratio, 3)})
                print(f"{name:<22}{f'{batch} x {length}':>12}{words / median[name]:>10.0f}{achieved / 1e9:>10.1f}"
                      f"{achieved / peak:>9.2f}{ratio if name == plugin else 1:>14.3f}")
    print("target: plugin/stock words/s >= 0.97")
    path = Path(args.csv)
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        if new:
            writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
