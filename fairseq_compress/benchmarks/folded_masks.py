"""Generation speed of a pruning-task checkpoint as fairseq-generate loads it (its parametrizations
folded once at load) against the same model with them kept (``original * mask``, and the fake
quantization of --qat-bits, recomputed at every decoding step: what fairseq-generate ran before
the pruning tasks folded them at load). One process, fairseq's beam search (beam 5, hypotheses capped at 1.5 x source + 10
tokens, as scripts/eval_bleu.sh), the first --sentences of the test split in batches of
--batch-size, the two models alternating batch by batch so machine noise hits both alike; prints
each one's sentences/s and the ratio, and checks that both generate the same hypotheses.

    OMP_NUM_THREADS=1 .venv/bin/python -m fairseq_compress.benchmarks.folded_masks --ckpt CKPT [--data data-bin/en_fr] \\
        [--batch-size 1] [--sentences 200] [--repeats 3]
"""
import argparse
import sys
import time
from argparse import Namespace
from pathlib import Path

import torch
from fairseq import checkpoint_utils
from torch.nn.utils import parametrize

import fairseq_compress  # noqa: F401  (the plugin's tasks, archs and safe loader)
from fairseq_compress.checkpoint_safety import load_state

ROOT = Path(__file__).resolve().parents[2]


def models_of(ckpt: Path, data: Path):
    """(folded, parametrized, task): as fairseq-generate loads the checkpoint, and as fairseq-train holds it."""
    [folded], cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(ckpt)], arg_overrides={"data": str(data)})
    parametrized = task.build_model(cfg.model)
    parametrized.load_state_dict(load_state(str(ckpt))["model"], model_cfg=cfg.model)
    if not any(parametrize.is_parametrized(m) for m in parametrized.modules()):
        sys.exit(f"error: --ckpt {ckpt} is not a checkpoint of a *_pruning task (its model has no parametrizations)")
    return folded.eval(), parametrized.eval(), task


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, type=Path, help="a translation_pruning checkpoint")
    parser.add_argument("--data", type=Path, default=ROOT / "data-bin/en_fr")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not args.ckpt.is_file():
        sys.exit(f"error: --ckpt {args.ckpt}: no such file")
    folded, parametrized, task = models_of(args.ckpt, args.data)
    models = {"folded": folded, "parametrized": parametrized}
    task.load_dataset("test")
    batches = task.get_batch_iterator(task.dataset("test"), max_sentences=args.batch_size,
                                      required_batch_size_multiple=1).next_epoch_itr(shuffle=False)
    batches = [batch for _, batch in zip(range(-(-args.sentences // args.batch_size)), batches)]
    options = Namespace(beam=5, max_len_a=1.5, max_len_b=10)
    generators = {name: task.build_generator([model], options) for name, model in models.items()}
    seconds = {name: 0.0 for name in models}
    for repeat in range(args.repeats):
        for i, batch in enumerate(batches):
            hypotheses = {}
            for name in sorted(models, reverse=(repeat + i) % 2 == 1):  # alternate which goes first
                start = time.perf_counter()
                hypotheses[name] = task.inference_step(generators[name], [models[name]], batch)
                seconds[name] += time.perf_counter() - start
            if [h[0]["tokens"].tolist() for h in hypotheses["folded"]] != \
                    [h[0]["tokens"].tolist() for h in hypotheses["parametrized"]]:
                sys.exit("error: the folded and the parametrized model generated different hypotheses")
    sentences = args.repeats * sum(len(batch["id"]) for batch in batches)
    speed = {name: sentences / s for name, s in seconds.items()}
    for name, value in speed.items():
        print(f"{name}: {value:.2f} sentences/s")
    print(f"folded at load: {speed['folded'] / speed['parametrized']:.2f}x the parametrized model's speed "
          f"(batch size {args.batch_size}, beam 5, {sentences} sentences, {torch.get_num_threads()} thread(s))")


if __name__ == "__main__":
    main()
