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
