"""Training curves of ELECTRA against masked-LM pretraining, read from their fairseq-train logs
(--log-format json, 'train_inner' records): the discriminator's accuracy on replaced tokens (0 is
the trivial 'everything is original' answer), its accuracy on all tokens, and the generator's
perplexity next to the masked LM's. Writes one CSV row per (run, update, metric) and a PNG."""
import argparse
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from fairseq_compress.studies import train_stats  # noqa: E402

ELECTRA_METRICS = ("disc_acc_replaced", "disc_acc", "replaced_frac", "gen_ppl")
MLM_METRICS = ("ppl",)


def inner_points(log_path):
    """[(num_updates, {metric: value})] of every 'train_inner' record."""
    with open(log_path, encoding="utf-8") as f:
        points = [(int(stats["num_updates"]), stats) for stats in train_stats.inner_points(f.read())]
    if not points:
        sys.exit(f"error: {log_path} has no 'train_inner' record (was it trained with --log-format json?)")
    return points


def series(points, metric):
    """(updates, values) of `metric` where the log has it."""
    kept = [(update, stats[metric]) for update, stats in points if metric in stats]
    return [u for u, _ in kept], [v for _, v in kept]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--electra", required=True, help="train.log of the ELECTRA run")
    parser.add_argument("--mlm", required=True, help="train.log of the masked-LM run")
    parser.add_argument("--csv", required=True)
    parser.add_argument("--png", required=True)
    args = parser.parse_args()
    runs = {"electra": (inner_points(args.electra), ELECTRA_METRICS), "mlm": (inner_points(args.mlm), MLM_METRICS)}

    with open(args.csv, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "num_updates", "metric", "value"])
        for run, (points, metrics) in runs.items():
            for update, stats in points:
                writer.writerows([run, update, m, stats[m]] for m in metrics if m in stats)

    electra, _ = runs["electra"]
    mlm, _ = runs["mlm"]
    fig, (acc, ppl) = plt.subplots(1, 2, figsize=(11, 4))
    for metric, label in (("disc_acc_replaced", "replaced tokens"), ("disc_acc", "all tokens")):
        acc.plot(*series(electra, metric), label=label)
    acc.axhline(0, color="grey", lw=0.8, ls="--")
    acc.set(xlabel="updates", ylabel="discriminator accuracy (%)",
            title="ELECTRA discriminator (0 on replaced = trivial)")
    acc.legend()
    ppl.plot(*series(electra, "gen_ppl"), label="ELECTRA generator")
    ppl.plot(*series(mlm, "ppl"), label="masked LM")
    ppl.set(xlabel="updates", ylabel="perplexity of masked tokens", yscale="log", title="Masked-token perplexity")
    ppl.legend()
    fig.tight_layout()
    fig.savefig(args.png, dpi=120)
    print(f"wrote {args.csv} and {args.png}")


if __name__ == "__main__":
    main()
