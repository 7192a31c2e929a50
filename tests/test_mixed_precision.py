"""Every plugin component trains in half precision, and acts: DropHead at its
scheduled rate, pruning to its sparsity (every schedule and scope), QAT, PQ and
scalar quant-noise at their rates, ELECTRA, the timed tasks, with and without
--checkpoint-activations. On CPU with fairseq's
--fp16 --fp16-no-flatten-grads and --memory-efficient-fp16; marked `gpu`, the
same runs on CUDA with the flattened --fp16 that GPU users get by default."""
import json
import math

import pytest
import torch

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


@pytest.mark.parametrize("precision", ALL_PRECISIONS)
def test_translation_pruning_gradual_global_with_qat_drophead_and_both_noises(precision, mt_data, tmp_path):
    from fairseq_compress.modules.scheduled_drophead import DropHeadSchedule
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
    en_bin, _ = mlm_data
    result = run(["fairseq-train", en_bin, *COMMON, *PRECISIONS[precision], "--task", "masked_lm",
                  "--criterion", "electra", "--arch", "electra_tiny", "--encoder-attention-heads", "8",
                  "--mask-prob", "0.15", "--leave-unmasked-prob", "0.15", "--random-token-prob", "0.0",
                  "--tokens-per-sample", "64", "--max-tokens", "1024", "--max-update", "4",
                  "--drophead-p", "0.3", "--drophead-schedule", "constant", "--checkpoint-activations",
                  "--save-dir", tmp_path])
    logs = train_logs(result)
    assert_finite(logs)
    assert all(log["drophead_p"] == 0.3 and 0 <= log["disc_acc"] <= 100 and log["n_replaced"] > 0
               for log in logs if "n_replaced" in log) and all("disc_acc" in log for log in logs)


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
