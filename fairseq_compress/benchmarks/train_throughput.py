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
square matmuls in the training dtype on the training device. Appends the rows to --csv.

--device cuda runs on the GPU (CUDA synchronized around every timing) with --batch-scale
times the CPU batch (default 8 there: the CPU shapes would only time kernel launches; a
fraction shrinks the batches, for a quick check).
--fp16 trains as ``fairseq-train --fp16`` does: model and criterion ``.half()`` (the
batches hold only token ids, which fairseq leaves as they are) and fairseq's own
``FP16Optimizer`` (fp32 master weights, fairseq's Adam, dynamic loss scaling, the overflow
check in ``clip_grad_norm``); not autocast, which fairseq's --fp16 does not use. The peak
is then that of fp16 matmuls. Updates skipped on overflow are timed too, as fairseq spends
that time as well, and counted in the output.

    .venv/bin/python -m fairseq_compress.benchmarks.train_throughput [--steps 20] [--threads 2]
    python -m fairseq_compress.benchmarks.train_throughput --device cuda --fp16
"""
import argparse
import csv
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.optim.fp16_optimizer import FP16Optimizer
from torch.utils.flop_counter import FlopCounterMode

from .drophead_overhead import USER_DIR, VOCAB, write_dictionaries

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


# Rows written before the device and dtype columns existed came from CPU fp32 runs.
OLD_ROWS = {"device": "cpu", "dtype": "float32"}


def build(task_name, criterion, task_args, arch_args, data_dir, device="cpu", fp16=False):
    parser = options.get_training_parser(default_task=task_name)
    fp16_args = ["--fp16", "--optimizer", "adam", "--lr", "0.0001"] if fp16 else []
    args = options.parse_args_and_arch(parser, [str(data_dir), "--task", task_name, "--criterion", criterion,
                                                "--user-dir", str(USER_DIR), "--arch"] + arch_args + task_args
                                       + fp16_args)
    task = tasks.setup_task(args)
    torch.manual_seed(0)
    model = task.build_model(args).train()
    criterion = task.build_criterion(args)
    if not fp16:
        model.to(device)
        return model, criterion, torch.optim.Adam(model.parameters(), lr=1e-4)
    # As fairseq's Trainer does for --fp16: half the model and criterion, then move them, then
    # wrap the optimizer of the config (adam) in FP16Optimizer over the trainable parameters.
    model, criterion = model.half().to(device), criterion.half().to(device)
    params = [p for p in list(model.parameters()) + list(criterion.parameters()) if p.requires_grad]
    with warnings.catch_warnings():  # hydra's deprecation notices, a screenful per model
        warnings.simplefilter("ignore")
        cfg = convert_namespace_to_omegaconf(args)
    return model, criterion, FP16Optimizer.build_optimizer(cfg, params)


def make_sample(task_name, batch, length, seed, device="cpu"):
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(4, VOCAB, (batch, length), generator=generator)
    net_input = {"src_tokens": tokens, "src_lengths": torch.full((batch,), length)}
    if task_name == "translation":
        net_input["prev_output_tokens"] = torch.roll(tokens, 1, dims=1)
        target = tokens
    else:  # masked_lm: predictions on 15 % of positions, the rest is padding (index 1) in the target
        target = tokens.masked_fill(torch.rand(batch, length, generator=generator) >= 0.15, 1)
    net_input = {k: v.to(device) for k, v in net_input.items()}  # token ids stay integers in fp16 too
    return {"net_input": net_input, "target": target.to(device), "ntokens": batch * length, "nsentences": batch}


def update(model, criterion, optimizer, sample):
    """One update; returns False when fp16 overflowed and fairseq would skip the step."""
    loss, sample_size, _ = criterion(model, sample)
    if not isinstance(optimizer, FP16Optimizer):
        (loss / sample_size).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return True
    # fairseq's Trainer.train_step: scaled backward, 1/sample_size folded into the unscaling,
    # clip_grad_norm (clip 0 = norm only) where the loss scaler checks for overflow, step.
    try:
        optimizer.backward(loss)
        optimizer.multiply_grads(1.0 / sample_size)
        optimizer.clip_grad_norm(0.0)
        optimizer.step()
        return True
    except OverflowError:
        return False
    finally:
        optimizer.zero_grad()


def update_flops(model, criterion, optimizer, sample):
    with FlopCounterMode(display=False) as counter:
        update(model, criterion, optimizer, sample)
    return counter.get_total_flops()


def matmul_peak(device="cpu", dtype=torch.float32, size=None, repeats=10):
    """FLOP/s of the best of `repeats` size x size matmuls in `dtype` on `device`: what its
    BLAS (cuBLAS on CUDA, where 8192 is large enough to reach the tensor cores' rate) reaches at best."""
    size = size or (8192 if device == "cuda" else 2048)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3 if device == "cuda" else 1):  # warm-up (cuBLAS heuristics, GPU clocks)
        a @ b
    best = min(_timed(lambda: a @ b, device) for _ in range(repeats))
    return 2 * size ** 3 / best


def _timed(fn, device="cpu"):
    # CUDA runs asynchronously: wait for queued work before starting and for fn's work before stopping.
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def time_pair(task_name, models, batch, length, warmup, steps, device="cpu"):
    """Median seconds per update of each model, and how many timed updates overflowed (fp16)."""
    times = {name: [] for name in models}
    skipped = dict.fromkeys(models, 0)
    for i in range(warmup + steps):
        sample = make_sample(task_name, batch, length, seed=i, device=device)
        order = list(models.items())
        for name, parts in order if i % 2 else order[::-1]:  # who goes first alternates
            done = []
            elapsed = _timed(lambda: done.append(update(*parts, sample)), device)
            if i >= warmup:
                times[name].append(elapsed)
                skipped[name] += not done[0]
    return {name: statistics.median(t) for name, t in times.items()}, skipped


def append_csv(path, rows):
    """Append rows; a file with older columns is rewritten under the new header, its rows kept."""
    fields = list(rows[0])
    old = []
    if path.exists():
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames != fields:
                old = [{**OLD_ROWS, **row} for row in reader]
    rewrite = old or not path.exists()
    with path.open("w" if rewrite else "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        if rewrite:
            writer.writeheader()
        writer.writerows(old + rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--csv", default=str(Path(__file__).parents[2] / "docs/results/train_throughput.csv"))
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--fp16", action="store_true", help="fairseq-style fp16 training (CUDA only)")
    parser.add_argument("--batch-scale", type=float, help="batch = this x the CPU batch (default 1 on cpu, 8 on cuda)")
    args = parser.parse_args()
    # One-line errors, before any model is built.
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("train_throughput.py: --device cuda, but torch.cuda.is_available() is False here")
    if args.fp16 and args.device != "cuda":
        sys.exit("train_throughput.py: --fp16 needs --device cuda (fairseq's fp16 training is for GPUs)")
    device, dtype = args.device, torch.float16 if args.fp16 else torch.float32
    scale = args.batch_scale or (8 if device == "cuda" else 1)
    torch.set_num_threads(args.threads)
    peak = matmul_peak(device, dtype)
    print(f"device={device} dtype={str(dtype)[6:]} threads={args.threads} steps={args.steps} "
          f"(median after {args.warmup} warm-up); matmul peak {peak / 1e9:.1f} GFLOP/s")
    print(f"{'arch':<22}{'batch x len':>12}{'words/s':>10}{'GFLOP/s':>10}{'of peak':>9}{'plugin/stock':>14}"
          f"{'overflows':>11}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        write_dictionaries(Path(tmp))
        for task_name, (criterion, task_args, plugin, stock, batch, length) in CASES.items():
            batch = max(1, round(batch * scale))
            models = {name: build(task_name, criterion, task_args, arch_args, Path(tmp), device, args.fp16)
                      for name, arch_args in ((plugin, [plugin]), (" ".join(stock[:1]), stock))}
            sample = make_sample(task_name, batch, length, seed=0, device=device)
            flops = {name: update_flops(*parts, sample) for name, parts in models.items()}
            median, skipped = time_pair(task_name, models, batch, length, args.warmup, args.steps, device)
            words = batch * length
            ratio = median[stock[0]] / median[plugin]
            for name in models:
                achieved = flops[name] / median[name]
                rows.append({"task": task_name, "arch": name, "threads": args.threads, "batch": batch,
                             "length": length, "words_per_s": round(words / median[name]),
                             "gflop_per_s": round(achieved / 1e9, 1), "fraction_of_peak": round(achieved / peak, 3),
                             "plugin_over_stock": round(ratio, 3), "device": device, "dtype": str(dtype)[6:]})
                print(f"{name:<22}{f'{batch} x {length}':>12}{words / median[name]:>10.0f}{achieved / 1e9:>10.1f}"
                      f"{achieved / peak:>9.2f}{ratio if name == plugin else 1:>14.3f}{skipped[name]:>11}")
    print("target: plugin/stock words/s >= 0.97")
    append_csv(Path(args.csv), rows)


if __name__ == "__main__":
    main()
