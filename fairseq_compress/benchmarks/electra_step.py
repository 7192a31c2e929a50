"""Cost of one ELECTRA update relative to one masked-LM update of the same discriminator.

ELECTRA (``electra_small``: 12 layers, hidden 256, embedding 128, generator at
1/4 width) with ``--criterion electra`` vs RoBERTa of the discriminator's shape
(``roberta_l12_h256``) with the stock ``masked_lm`` criterion, on the same
masked batch (ELECTRA's masking: 15 %, of which 85 % [MASK]). One update =
forward + backward + Adam step. The two take turns step by step, so machine
noise hits them alike; prints medians of --steps updates after --warmup, the
ratio (target <= 1.35) and the tokens/s of each.

    .venv/bin/python -m fairseq_compress.benchmarks.electra_step [--steps 20] [--batch 32] [--length 128]
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from fairseq import options, tasks

from .drophead_overhead import USER_DIR, VOCAB, write_dictionaries

MODELS = {  # name: (arch, criterion)
    "electra": ("electra_small", "electra"),
    "mlm": ("roberta_l12_h256", "masked_lm"),
}


def build(arch, criterion, data_dir, length):
    parser = options.get_training_parser(default_task="masked_lm")
    args = options.parse_args_and_arch(parser, [
        str(data_dir), "--task", "masked_lm", "--arch", arch, "--criterion", criterion, "--user-dir", str(USER_DIR),
        "--tokens-per-sample", str(length), "--mask-prob", "0.15", "--leave-unmasked-prob", "0.15",
        "--random-token-prob", "0.0"])
    task = tasks.setup_task(args)
    model = task.build_model(args).train()
    return task, model, task.build_criterion(args)


def masked_batch(task, batch, length, seed):
    """What the masked_lm task yields: 15 % of positions chosen, 85 % of them [MASK]."""
    generator = torch.Generator().manual_seed(seed)
    dictionary = task.source_dictionary
    tokens = torch.randint(dictionary.nspecial, VOCAB, (batch, length), generator=generator)
    chosen = torch.rand(batch, length, generator=generator) < 0.15
    to_mask = chosen & (torch.rand(batch, length, generator=generator) < 0.85)
    src = tokens.masked_fill(to_mask, task.mask_idx)
    target = tokens.masked_fill(~chosen, dictionary.pad())
    return {"net_input": {"src_tokens": src, "src_lengths": torch.full((batch,), length)},
            "target": target, "ntokens": batch * length, "nsentences": batch}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        write_dictionaries(Path(tmp))
        runs = {}
        for name, (arch, criterion) in MODELS.items():
            torch.manual_seed(0)
            task, model, crit = build(arch, criterion, Path(tmp), args.length)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
            runs[name] = (task, model, crit, optimizer, sum(p.numel() for p in model.parameters()))
        times = {name: [] for name in runs}
        for i in range(args.warmup + args.steps):
            for name, (task, model, crit, optimizer, _) in runs.items():
                sample = masked_batch(task, args.batch, args.length, seed=i)
                start = time.perf_counter()
                loss, sample_size, _ = crit(model, sample)
                (loss / sample_size).backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if i >= args.warmup:
                    times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    tokens = args.batch * args.length
    print(f"threads={args.threads} batch={args.batch}x{args.length} steps={args.steps} (median after {args.warmup} warm-up)")
    print(f"{'model':<10}{'arch':<20}{'params':>12}{'s/update':>10}{'tokens/s':>10}")
    for name, (arch, _) in MODELS.items():
        print(f"{name:<10}{arch:<20}{runs[name][4]:>12,}{median[name]:>10.3f}{tokens / median[name]:>10.0f}")
    print(f"ELECTRA / MLM update time: {median['electra'] / median['mlm']:.3f} (target <= 1.35)")


if __name__ == "__main__":
    main()
