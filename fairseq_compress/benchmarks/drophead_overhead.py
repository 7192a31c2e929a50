"""Step time (forward + backward) of DropHead attention vs stock fairseq attention.

For transformer_l6_h512 and roberta_l6_h512 at one fixed batch shape, times
(a) stock fairseq MultiheadAttention, (b) DropHeadMultiheadAttention at p = 0,
(c) at p = 0.1, on the same weights and batch, and prints (b)/(a) and (c)/(a):
medians of --steps steps after --warmup steps. The three variants take turns
step by step, so machine noise hits them alike. Targets: (b) <= 1.01, (c) <= 1.03.

    .venv/bin/python -m fairseq_compress.benchmarks.drophead_overhead [--steps 20] [--threads 2]
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from fairseq import options, tasks
from fairseq.data import Dictionary
from fairseq.modules import MultiheadAttention

import fairseq_compress
from fairseq_compress.modules.scheduled_drophead import DropHeadMultiheadAttention

VOCAB = 8000
USER_DIR = Path(fairseq_compress.__file__).parent


def build(arch, task_name, data_dir):
    parser = options.get_training_parser(default_task=task_name)
    args = options.parse_args_and_arch(
        parser,
        [str(data_dir), "--task", task_name, "--arch", arch, "--user-dir", str(USER_DIR),
         "--drophead-p", "0.1", "--drophead-schedule", "constant"]
        + (["-s", "en", "-t", "fr"] if task_name == "translation" else ["--tokens-per-sample", "512"]),
    )
    task = tasks.setup_task(args)
    return task.build_model(args).train()


def write_dictionaries(data_dir):
    dictionary = Dictionary()
    for i in range(VOCAB):
        dictionary.add_symbol(f"w{i}", n=VOCAB - i)
    for name in ("dict.txt", "dict.en.txt", "dict.fr.txt"):
        dictionary.save(str(data_dir / name))


def translation_step(model, batch, length):
    tokens = torch.randint(4, VOCAB, (batch, length))
    out, _ = model(tokens, torch.full((batch,), length), tokens)
    return out


def masked_lm_step(model, batch, length):
    tokens = torch.randint(4, VOCAB, (batch, length))
    out, _ = model(tokens)
    return out


def set_variant(model, variant):
    """(a) stock class, (b)/(c) DropHead class at p = 0 / 0.1: same weights throughout."""
    for module in model.drophead_modules:
        module.__class__ = MultiheadAttention if variant == "stock" else DropHeadMultiheadAttention
        module.drophead_p = {"stock": 0.0, "p0": 0.0, "p0.1": 0.1}[variant]


def time_variants(model, step, batch, length, warmup, steps):
    variants = ("stock", "p0", "p0.1")
    times = {v: [] for v in variants}
    for i in range(warmup + steps):
        for variant in variants:
            set_variant(model, variant)
            torch.manual_seed(i)
            start = time.perf_counter()
            step(model, batch, length).float().sum().backward()
            elapsed = time.perf_counter() - start
            model.zero_grad(set_to_none=True)
            if i >= warmup:
                times[variant].append(elapsed)
    return {v: statistics.median(t) for v, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cases = [
        ("transformer_l6_h512", "translation", translation_step, 16, 32),
        ("roberta_l6_h512", "masked_lm", masked_lm_step, 8, 128),
    ]
    print(f"threads={args.threads} steps={args.steps} (median after {args.warmup} warm-up steps)")
    print(f"{'arch':<22}{'batch x len':>12}{'stock s':>10}{'p=0 / stock':>13}{'p=0.1 / stock':>15}")
    with tempfile.TemporaryDirectory() as tmp:
        write_dictionaries(Path(tmp))
        for arch, task_name, step, batch, length in cases:
            model = build(arch, task_name, Path(tmp))
            median = time_variants(model, step, batch, length, args.warmup, args.steps)
            print(
                f"{arch:<22}{f'{batch} x {length}':>12}{median['stock']:>10.4f}"
                f"{median['p0'] / median['stock']:>13.3f}{median['p0.1'] / median['stock']:>15.3f}"
            )
    print("targets: p=0 / stock <= 1.01, p=0.1 / stock <= 1.03")


if __name__ == "__main__":
    main()
