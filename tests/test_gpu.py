"""Device- and dtype-sensitive parts on CUDA (`pytest -m gpu`; skipped without CUDA).
The training runs of every component under the flattened --fp16 are in
test_mixed_precision.py (its cuda_fp16 cases)."""
import copy
import math

import pytest
import torch
from fairseq.modules import MultiheadAttention

import fairseq_compress  # noqa: F401
from fairseq_compress.checkpoint_safety import load_state
from fairseq_compress.compress.ipq import kmeans
from fairseq_compress.compress.magnitude_pruning import magnitude_masks
from fairseq_compress.modules.quant_noise import pq_noise, scalar_noise
from fairseq_compress.modules.scheduled_drophead import DropHeadMultiheadAttention
from fairseq_compress.tasks.timed import max_over_ranks

from conftest import ROOT, USER_DIR, run, train_mt_command

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
CUDA = torch.device("cuda")
GPU_TRAIN = train_mt_command(device=("--fp16",))


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_magnitude_masks_on_cuda_equal_the_cpu_ones(scope):
    torch.manual_seed(0)
    weights = [torch.randn(256, 128), torch.randn(64, 256)]
    on_cpu = magnitude_masks(weights, 0.7, scope)
    on_gpu = magnitude_masks([w.to(CUDA).half() for w in weights], 0.7, scope)
    assert all(m.device.type == "cuda" for m in on_gpu)
    agreement = sum(int((a.cpu() == b).sum()) for a, b in zip(on_gpu, on_cpu)) / sum(m.numel() for m in on_cpu)
    assert agreement > 0.99  # fp16 rounding moves a few weights across the threshold
    assert sum(int(m.sum()) for m in on_gpu) == sum(int(m.sum()) for m in on_cpu)


def test_drophead_in_fp16_on_cuda_with_every_head_kept_equals_stock():
    torch.manual_seed(0)
    stock = MultiheadAttention(64, 4, self_attention=True).to(CUDA).half().train()
    drophead = copy.deepcopy(stock)
    drophead.__class__ = DropHeadMultiheadAttention
    x = torch.randn(7, 3, 64, device=CUDA, dtype=torch.half)
    expected, _ = stock(x, x, x, need_weights=False)
    actual, _ = drophead._drophead_forward(x, x, x, None, False, None)
    assert actual.dtype == torch.half
    torch.testing.assert_close(actual, expected, atol=2e-3, rtol=2e-3)


def test_drophead_weights_in_fp16_on_cuda_are_fairseqs_float32_probabilities():
    torch.manual_seed(0)
    stock = MultiheadAttention(64, 4, encoder_decoder_attention=True).to(CUDA).half().train()
    drophead = copy.deepcopy(stock)
    drophead.__class__ = DropHeadMultiheadAttention
    query, key = (torch.randn(n, 3, 64, device=CUDA, dtype=torch.half) for n in (5, 7))
    _, expected = stock(query, key, key, static_kv=True, need_head_weights=True)
    _, actual = drophead._drophead_forward(query, key, key, None, True, None, True)
    assert actual.dtype == expected.dtype == torch.float32
    torch.testing.assert_close(actual, expected, atol=2e-3, rtol=2e-3)


def test_gradient_importance_stays_float32_in_a_half_model_on_cuda():
    from torch import nn

    from fairseq_compress.compress.structured_pruning import accumulate_importance
    from fairseq_compress.tasks.pruning import PruningOptions, attach_masks

    torch.manual_seed(0)
    attention = MultiheadAttention(16, 4, self_attention=True)
    groups = attach_masks(nn.ModuleDict({"attn": attention}),
                          PruningOptions(prune_granularity="head", prune_targets="proj", prune_score="gradient"))
    attention.half().to(CUDA)  # as fairseq's Trainer does under --fp16
    x = torch.randn(5, 3, 16, device=CUDA, dtype=torch.half)
    attention(x, x, x)[0].float().sum().backward()
    accumulate_importance(groups)
    importance = attention.out_proj.parametrizations.weight[0].importance
    assert importance.dtype == torch.float32 and importance.device.type == "cuda"
    torch.testing.assert_close(importance.sum().item(), 1.0)  # one step's shares


def test_a_gated_off_half_layer_on_cuda_passes_its_input_through():
    from argparse import Namespace

    from fairseq.modules.transformer_layer import TransformerEncoderLayer

    from fairseq_compress.modules.layer_gates import attach_layer_gates, set_gate

    args = Namespace(encoder_embed_dim=16, encoder_ffn_embed_dim=32, encoder_attention_heads=2, dropout=0.0,
                     attention_dropout=0.0, activation_dropout=0.0, encoder_normalize_before=False)
    layer = TransformerEncoderLayer(args)
    attach_layer_gates([layer])
    set_gate(layer, False)
    layer.half().to(CUDA).train()
    with torch.no_grad():
        layer.fc1.weight.fill_(200)  # an fp16 sum of 65504 or more is inf
    x = torch.randn(4, 2, 16, device=CUDA, dtype=torch.half, requires_grad=True)
    assert torch.equal(layer(x, None), x)


def test_quant_noise_keeps_the_weights_device_and_dtype():
    weight = torch.randn(64, 32, device=CUDA, dtype=torch.half, requires_grad=True)
    for noised, chosen in (pq_noise(weight, 0.2, 8), scalar_noise(weight, 0.5, 8)):
        assert noised.dtype == torch.half and noised.device.type == "cuda" and chosen.device.type == "cuda"


def test_kmeans_on_cuda():
    torch.manual_seed(0)
    centers = torch.randn(4, 8) * 10
    vectors = (centers[torch.arange(400) % 4] + torch.randn(400, 8) * 0.1).to(CUDA)
    centroids, assignments = kmeans(vectors, 4, n_iter=10)
    assert centroids.device.type == "cuda" and len(assignments.unique()) == 4


def test_timed_tasks_reduce_their_decision_under_nccl(tmp_path):
    torch.distributed.init_process_group("nccl", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0,
                                         world_size=1)
    try:
        assert max_over_ranks(1.5) == 1.5
    finally:
        torch.distributed.destroy_process_group()


def test_ipq_fine_tuning_on_cuda_writes_a_cpu_checkpoint(mt_checkpoint, mt_data, tmp_path):
    out = tmp_path / "ipq.pt"
    run(["fairseq-compress", "ipq", "--path", mt_checkpoint, "--config",
         ROOT / "fairseq_compress/config/ipq/transformer.yaml", "--out", out, "--data", mt_data,
         "--finetune-updates", "2", "--n-iter", "3"])
    entries = load_state(out)["model"]
    tensors = [t for e in entries.values() for t in (e.values() if isinstance(e, dict) else [e]) if torch.is_tensor(t)]
    assert tensors and all(t.device.type == "cpu" for t in tensors)


def test_generate_fp16_on_cuda_from_a_qat_pruning_checkpoint(mt_data, tmp_path):
    run(GPU_TRAIN + [mt_data, "--arch", "transformer_l2_h128", "--task", "translation_pruning",
                     "--prune-sparsity", "0.5", "--prune-schedule", "gradual", "--prune-end-update", "6",
                     "--prune-frequency", "2", "--qat-bits", "8", "--max-update", "8", "--save-dir", tmp_path])
    result = run(["fairseq-generate", mt_data, "--user-dir", USER_DIR, "--fp16", "--path",
                  tmp_path / "checkpoint_last.pt", "--beam", "2", "--max-sentences", "64", "--max-len-b", "10"])
    assert result.stdout.count("\nH-") == 200
    assert all(math.isfinite(float(line.split("\t")[1])) for line in result.stdout.splitlines()
               if line.startswith("H-"))
