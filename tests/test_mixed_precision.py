"""Every plugin component trains in half precision, and acts: DropHead at its
scheduled rate, pruning to its sparsity (every schedule and scope), QAT, PQ and
scalar quant-noise at their rates, ELECTRA, the timed tasks, with and without
--checkpoint-activations. On CPU with fairseq's
--fp16 --fp16-no-flatten-grads and --memory-efficient-fp16; marked `gpu`, the
same runs on CUDA with the flattened --fp16 that GPU users get by default.
What a run cannot log (the heads DropHead drops, QAT's grid, the checkpoint wrappers) is read
off the run's model, rebuilt from its checkpoint as a resumed run builds it, in fp16."""
import json
import math

import pytest
import torch
from fairseq import checkpoint_utils, tasks
from fairseq.modules.transformer_layer import TransformerEncoderLayerBase
from torch.nn.utils import parametrize

from conftest import USER_DIR, log_records, run

PRECISIONS = {
    "cpu_fp16": ["--cpu", "--fp16", "--fp16-no-flatten-grads"],
    "cpu_memory_efficient_fp16": ["--cpu", "--memory-efficient-fp16"],
    "cuda_fp16": ["--fp16"],
}
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
PRECISION_PARAMS = [pytest.param("cpu_fp16"), pytest.param("cuda_fp16", marks=[pytest.mark.gpu, needs_cuda])]
# memory-efficient fp16 (fp16 weights, no fp32 copy) once, on the run that combines most components
ALL_PRECISIONS = PRECISION_PARAMS + [pytest.param("cpu_memory_efficient_fp16")]
COMMON = ["--user-dir", USER_DIR, "--seed", "1", "--optimizer", "adam", "--lr", "0.0005", "--no-progress-bar",
          "--log-interval", "1", "--log-format", "json", "--num-workers", "0", "--no-epoch-checkpoints",
          "--fp16-init-scale", "16"]
MT = ["--task", "translation_pruning", "--arch", "transformer_l2_h128", "--max-tokens", "1024",
      "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "3", "--max-update", "6"]


def train_logs(result):
    """The stats of every train_inner record, numbers as floats."""
    logs = log_records(result.stdout + result.stderr, "train_inner")
    assert logs, (result.stdout + result.stderr)[-3000:]
    return logs


def assert_finite(logs):
    assert all(math.isfinite(log["loss"]) for log in logs), [log["loss"] for log in logs]


def trained_model(save_dir, data, precision):
    """(fp16 model of save_dir's checkpoint_last.pt, built by its task as a resumed run builds it;
    its task), on the run's device."""
    state = checkpoint_utils.load_checkpoint_to_cpu(str(save_dir / "checkpoint_last.pt"),
                                                    arg_overrides={"data": str(data)})
    task = tasks.setup_task(state["cfg"].task)
    model = task.build_model(state["cfg"].model)
    model.load_state_dict(state["model"], model_cfg=state["cfg"].model)
    return model.half().to("cuda" if precision == "cuda_fp16" else "cpu"), task


def first_batch(task, model, split="valid"):
    task.load_dataset(split)
    batch = next(task.get_batch_iterator(task.dataset(split), max_tokens=2048, seed=1).next_epoch_itr(shuffle=False))
    device = next(model.parameters()).device
    return {key: value.to(device) for key, value in batch["net_input"].items()}


def dropped_heads(model, net_input):
    """(the fraction of (example, head) pairs whose context reaches out_proj all zero, the DropHead
    modules that ran) in one training-mode forward: what DropHead did, not the rate it logs."""
    dropped = {}

    def hook(attention):
        def record(out_proj, args):
            dropped[attention] = args[0].unflatten(-1, (attention.num_heads, -1)).eq(0).all(-1).all(0).flatten()
        return record

    hooks = [m.out_proj.register_forward_pre_hook(hook(m)) for m in model.drophead_modules]
    model.train()
    torch.manual_seed(0)  # one fixed draw: several hundred heads, the rate within 0.05 of p - p^H
    with torch.no_grad():
        model(**net_input)
    for handle in hooks:
        handle.remove()
    return torch.cat(list(dropped.values())).float().mean().item(), list(dropped)


def assert_on_8_bit_grids(model):
    """Every QAT weight, as the forward reads it, is fp16 and on its row's symmetric 8-bit grid."""
    quantized = [m for m in model.modules() if parametrize.is_parametrized(m, "weight")]
    assert quantized
    for module in quantized:
        assert [type(p).__name__ for p in module.parametrizations.weight] == ["PruningMask", "QATQuantizer"]
        weight = module.weight.detach()
        assert weight.dtype == torch.half
        steps = weight.float() / (weight.float().abs().amax(1, keepdim=True) / 127).clamp_min(1e-30)
        assert (steps - steps.round()).abs().max() < 0.1  # fp16 rounds q * scale by at most 127 * 2**-11


@pytest.mark.parametrize("precision", ALL_PRECISIONS)
def test_translation_pruning_gradual_global_with_qat_drophead_and_both_noises(precision, mt_data, tmp_path):
    from fairseq_compress.modules.scheduled_drophead import DropHeadSchedule, effective_rate
    from fairseq_compress.tasks.pruning import PruningOptions, target_sparsity

    result = run(["fairseq-train", mt_data, *COMMON, *PRECISIONS[precision], *MT,
                  "--prune-sparsity", "0.5", "--prune-schedule", "gradual", "--prune-end-update", "4",
                  "--prune-frequency", "2", "--qat-bits", "8", "--drophead-p", "0.2",
                  "--criterion", "quant_noise", "--qn-criterion", "cross_entropy", "--qn-pq", "0.2",
                  "--qn-scalar", "0.3", "--save-dir", tmp_path])
    logs = train_logs(result)
    assert_finite(logs)
    schedule = PruningOptions(prune_sparsity=0.5, prune_schedule="gradual", prune_end_update=4, prune_frequency=2)
    for log in logs:
        update = int(log["num_updates"]) - 1  # the update the line's stats were measured in
        assert log["drophead_p"] == pytest.approx(DropHeadSchedule(0.2, "v", 3, 6).rate(update), abs=1e-4)
        assert log["prune_target"] == pytest.approx(target_sparsity(schedule, update), abs=1e-3)
        assert 0.1 < log["qn_pq"] < 0.3 and 0.2 < log["qn_scalar"] < 0.4
    assert logs[-1]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    model, task = trained_model(tmp_path, mt_data, precision)
    assert_on_8_bit_grids(model)
    model.set_num_updates(6)  # the V's top: p = 0.2, of which an example never loses all 2 heads
    fraction, modules = dropped_heads(model, first_batch(task, model))
    assert len(modules) == len(model.drophead_modules) and fraction == pytest.approx(effective_rate(0.2, modules), abs=0.05)


@pytest.mark.parametrize("precision", PRECISION_PARAMS)
def test_translation_pruning_oneshot_per_layer_with_scalar_noise_and_checkpointed_activations(precision, mt_data, tmp_path):
    result = run(["fairseq-train", mt_data, *COMMON, *PRECISIONS[precision], *MT,
                  "--prune-sparsity", "0.7", "--prune-scope", "layer", "--prune-start-update", "1",
                  "--criterion", "quant_noise", "--qn-criterion", "label_smoothed_cross_entropy",
                  "--label-smoothing", "0.1", "--qn-scalar", "0.5", "--checkpoint-activations",
                  "--save-dir", tmp_path])
    logs = train_logs(result)
    assert_finite(logs)
    assert logs[0]["sparsity"] == 0 and logs[-1]["sparsity"] == pytest.approx(0.7, abs=1e-3)
    assert all(0.4 < log["qn_scalar"] < 0.6 for log in logs)


@pytest.mark.parametrize("precision", PRECISION_PARAMS)
def test_electra_with_drophead_and_checkpointed_activations(precision, mlm_data, tmp_path):
    from fairseq_compress.modules.scheduled_drophead import effective_rate

    en_bin, _ = mlm_data
    result = run(["fairseq-train", en_bin, *COMMON, *PRECISIONS[precision], "--task", "masked_lm",
                  "--criterion", "electra", "--arch", "electra_tiny", "--encoder-attention-heads", "8",
                  "--mask-prob", "0.15", "--leave-unmasked-prob", "0.15", "--random-token-prob", "0.0",
                  "--tokens-per-sample", "64", "--max-tokens", "1024", "--max-update", "4",
                  "--drophead-p", "0.3", "--drophead-schedule", "constant", "--checkpoint-activations",
                  "--save-dir", tmp_path])
    logs = train_logs(result)
    assert_finite(logs)
    model, task = trained_model(tmp_path, en_bin, precision)
    for log in logs:
        assert log["drophead_p"] == 0.3 and 0 <= log["disc_acc"] <= 100 and 0 <= log["disc_acc_replaced"] <= 100
        # the generator's samples replace most of the 15 % masked tokens, and no other
        assert 10 < log["replaced_frac"] <= 16
        # loss = mean generator cross-entropy (nats) + 50 x mean discriminator cross-entropy
        assert log["loss"] == pytest.approx(log["gen_loss"] * math.log(2) + 50 * log["disc_loss"], abs=0.01)
    # an untrained generator guesses among the whole vocabulary: about log2(V) bits
    assert logs[0]["gen_loss"] == pytest.approx(math.log2(len(task.source_dictionary)), abs=1)
    for part in (model.encoder.sentence_encoder, model.encoder.generator):  # discriminator, generator
        layers = [m for m in part.modules() if isinstance(m, TransformerEncoderLayerBase)]
        assert layers and all(hasattr(layer, "precheckpoint_forward") for layer in layers)  # checkpoint_wrapper's
    fraction, modules = dropped_heads(model, first_batch(task, model))  # the discriminator's attention
    assert modules and fraction == pytest.approx(effective_rate(0.3, modules), abs=0.05)


@pytest.mark.parametrize("precision", PRECISION_PARAMS)
def test_timed_task_stops_and_validates_by_time(precision, mt_data, tmp_path):
    result = run(["fairseq-train", mt_data, *COMMON, *PRECISIONS[precision], "--task", "translation_timed",
                  "--arch", "transformer_l2_h128", "--criterion", "cross_entropy", "--max-tokens", "1024",
                  "--stop-time-minutes", "0.1", "--validate-interval-seconds", "2", "--save-dir", tmp_path])
    assert_finite(train_logs(result))
    points = [json.loads(line) for line in (tmp_path / "curve.jsonl").read_text().splitlines()]
    assert len(points) >= 2 and points[-1]["train_seconds"] >= 6
    assert all(math.isfinite(p["loss"]) for p in points)


@pytest.mark.parametrize("precision", ALL_PRECISIONS)
def test_structured_pruning_by_gradient_importance_with_layers_and_checkpointed_activations(precision, mt_data,
                                                                                            tmp_path):
    """Heads and neurons ranked from loss-scaled fp16 gradients, layers gated inside checkpoint_wrapper."""
    result = run(["fairseq-train", mt_data, *COMMON, *PRECISIONS[precision], *MT,
                  "--prune-granularity", "head,neuron,layer", "--prune-score", "gradient", "--prune-sparsity", "0.5",
                  "--prune-scope", "layer", "--prune-schedule", "gradual", "--prune-end-update", "4", "--prune-frequency", "2",
                  "--checkpoint-activations", "--save-dir", tmp_path])
    logs = train_logs(result)
    assert_finite(logs)
    assert logs[-1]["layers_kept"] == 0.5
    state = torch.load(tmp_path / "checkpoint_last.pt", map_location="cpu", weights_only=False)["model"]
    importance = [v for k, v in state.items() if k.endswith(".importance")]
    assert importance and all(torch.isfinite(v).all() for v in importance)
    heads = state["encoder.layers.0.self_attn.out_proj.parametrizations.weight.0.mask"].view(128, 2, 64).any(2).any(0)
    assert heads.sum() == 1
    neurons = state["encoder.layers.0.fc2.parametrizations.weight.0.mask"].any(0)
    assert neurons.sum() == 256
    assert state["encoder.layers.1.prune_layer_kept"].item() is False
