"""fairseq-compress quantize / prune: values against torch's per-channel
quantizer, bit packing, sparse storage, the compressed checkpoint (int codes,
ties stored once, bytes), the stock fairseq loaders on it, and bad input."""
import json

import pytest
import torch
from conftest import USER_DIR, one_line_error, run
from fairseq import checkpoint_utils

import fairseq_compress  # noqa: F401  (installs the loader)
from fairseq_compress.checkpoint_safety import load_state
from fairseq_compress.compress.checkpoint_format import (FORMAT_KEY, decode_entry, encode_int, encode_weight, int_decode,
                                                         pack_bits, unpack_bits)
from fairseq_compress.compress.post_training import prune_and_quantize


def test_int8_matches_torch_per_channel_quantization():
    weight = torch.randn(16, 24) * torch.linspace(0.1, 3, 16)[:, None]
    entry = encode_int(weight, 8)
    scale = weight.abs().amax(1) / 127
    reference = torch.quantize_per_channel(weight, scale.double(), torch.zeros(16, dtype=torch.long), 0, torch.qint8)
    torch.testing.assert_close(entry["scale"], scale, atol=0, rtol=1e-7)
    torch.testing.assert_close(int_decode(entry["packed"], entry["scale"], 8, entry["shape"]),
                               reference.dequantize(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("bits", [8, 6, 4, 3])
def test_quantization_error_is_within_half_a_step(bits):
    weight = torch.randn(10, 3, 5)  # conv-shaped: one scale per output channel
    entry = encode_int(weight, bits)
    decoded = int_decode(entry["packed"], entry["scale"], bits, entry["shape"])
    step = entry["scale"][:, None, None]
    assert decoded.shape == weight.shape
    assert ((decoded - weight).abs() <= step / 2 + 1e-6).all()
    # the largest weight of each row is representable exactly (symmetric range)
    rows = weight.reshape(10, -1)
    biggest = rows.abs().argmax(1)
    torch.testing.assert_close(decoded.reshape(10, -1).gather(1, biggest[:, None]),
                               rows.gather(1, biggest[:, None]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("bits,count", [(4, 11), (6, 9), (8, 5), (2, 13)])
def test_bit_packing_round_trips_and_is_dense(bits, count):
    values = torch.randint(0, 2 ** bits, (count,))
    packed = pack_bits(values, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == -(-count * bits // 8)
    assert torch.equal(unpack_bits(packed, bits, count).long(), values)
    if bits == 4:  # two per byte, first value in the high nibble
        assert packed[0] == values[0] * 16 + values[1]


def stored_bytes(entry):
    return sum(t.numel() * t.element_size() for t in entry.values() if torch.is_tensor(t))


@pytest.mark.parametrize("bits", [None, 8, 4])
def test_sparse_storage_round_trips_and_is_small(bits):
    torch.manual_seed(0)
    weight = torch.randn(64, 256)
    weight[torch.rand(64, 256) < 0.9] = 0
    entry = encode_weight(weight, bits)
    assert entry["format"] == "sparse"
    dense_form = encode_int(weight, bits) if bits else None
    expected = decode_entry(dense_form, {}) if bits else weight.half().float()
    torch.testing.assert_close(decode_entry(entry, {}), expected, atol=0, rtol=0)
    per_weight = (stored_bytes(entry) - (entry["scale"].numel() * 4 if bits else 0)) / weight.numel()
    value_bytes = (bits or 16) / 8
    assert per_weight == pytest.approx(0.125 + 0.1 * value_bytes, abs=0.01)  # bitmask + nonzeros


def test_dense_matrices_stay_dense():
    weight = torch.randn(8, 16)
    weight[0, :4] = 0  # 3 % zeros: a bitmask would cost more than it saves
    assert encode_weight(weight, 8)["format"] == "int" and torch.is_tensor(encode_weight(weight))


@pytest.fixture(scope="module")
def int4_checkpoint(mt_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("scalar") / "int4.pt"
    prune_and_quantize(mt_checkpoint, out, bits=4)
    return out


def test_int4_checkpoint_layout_and_exact_decode(int4_checkpoint, mt_checkpoint):
    dense = load_state(mt_checkpoint)["model"]
    stored = load_state(int4_checkpoint)
    assert stored[FORMAT_KEY] and not stored["last_optimizer_state"]
    entries = stored["model"]
    fc1 = entries["encoder.layers.0.fc1.weight"]
    assert fc1["format"] == "int" and fc1["bits"] == 4 and fc1["packed"].numel() * 2 == dense[
        "encoder.layers.0.fc1.weight"].numel()
    assert entries["decoder.output_projection.weight"]["format"] == "alias"  # tied to the embeddings, stored once
    assert entries["encoder.layers.0.fc1.bias"].dtype == torch.float16
    [loaded], _ = checkpoint_utils.load_model_ensemble([str(int4_checkpoint)])
    expected = encode_int(dense["encoder.layers.1.self_attn.k_proj.weight"], 4)
    torch.testing.assert_close(loaded.encoder.layers[1].self_attn.k_proj.weight,
                               int_decode(expected["packed"], expected["scale"], 4, expected["shape"]), atol=0, rtol=0)
    assert loaded.decoder.output_projection.weight is loaded.decoder.embed_tokens.weight


def test_quantize_cli_reports_size_and_stock_generate_loads_it(mt_checkpoint, mt_data, tmp_path):
    out = tmp_path / "int8.pt"
    report = json.loads(run(["fairseq-compress", "quantize", "--path", mt_checkpoint, "--bits", "8",
                             "--out", out]).stdout)
    # int8 weights + fp16 biases/LayerNorms: a bit over 4x smaller than fp32
    assert 3.3 < report["ratio_vs_fp32_model"] < 4.0
    gen = run(["fairseq-generate", mt_data, "--user-dir", USER_DIR, "--cpu", "--path", out, "--gen-subset", "test",
               "--beam", "2", "--max-sentences", "50", "--max-len-b", "20", "--num-workers", "0"])
    assert "BLEU" in gen.stdout + gen.stderr


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_prune_cli_sparsity_and_stock_generate(mt_checkpoint, mt_data, tmp_path, scope):
    out = tmp_path / "pruned.pt"
    run(["fairseq-compress", "prune", "--path", mt_checkpoint, "--sparsity", "0.7", "--scope", scope, "--bits", "8",
         "--out", out])
    dense = load_state(mt_checkpoint)["model"]
    [model], _ = checkpoint_utils.load_model_ensemble([str(out)])
    targets = {name: p for name, p in model.named_parameters() if ".layers." in name and name.endswith(".weight")
               and p.dim() == 2}
    zeros = sum(int((p == 0).sum()) for p in targets.values())
    assert zeros / sum(p.numel() for p in targets.values()) == pytest.approx(0.7, abs=0.01)
    if scope == "layer":
        assert all(abs((p == 0).float().mean().item() - 0.7) < 0.01 for p in targets.values())
    # not a target: quantized, not pruned
    embed = model.encoder.embed_tokens.weight
    assert (embed == 0).float().mean() < 0.05 and not torch.equal(embed, dense["encoder.embed_tokens.weight"])
    stored = load_state(out)["model"]
    assert stored["encoder.layers.0.fc1.weight"]["format"] == "sparse"
    if scope == "global":
        gen = run(["fairseq-generate", mt_data, "--user-dir", USER_DIR, "--cpu", "--path", out, "--gen-subset",
                   "test", "--beam", "2", "--max-sentences", "50", "--max-len-b", "10", "--num-workers", "0"])
        assert "BLEU" in gen.stdout + gen.stderr


def test_bad_input(mt_checkpoint, int4_checkpoint, tmp_path):
    out = tmp_path / "out.pt"
    quantize = ["fairseq-compress", "quantize", "--out", out]
    for args, fragment in [
        (["--path", mt_checkpoint, "--bits", "9"], "--bits 9: allowed values are 2, 3, 4, 5, 6, 7, 8"),
        (["--path", int4_checkpoint, "--bits", "8"], "is already compressed"),
        (["--path", tmp_path / "missing.pt", "--bits", "8"], "--path"),
    ]:
        one_line_error(run(quantize + args, check=False), fragment)
    prune = ["fairseq-compress", "prune", "--path", mt_checkpoint, "--out", out]
    for args, fragment in [
        (["--sparsity", "1.0"], "--sparsity must be in [0, 1), got 1.0"),
        (["--sparsity", "0.5", "--targets", "nothing"], "--targets nothing matches no weight matrix"),
    ]:
        one_line_error(run(prune + args, check=False), fragment)
    assert not out.exists()
    one_line_error(run(quantize + ["--path", mt_checkpoint, "--bits", "8", "--out", mt_checkpoint], check=False),
                   "would overwrite --path")
    no_cfg = tmp_path / "weights_only.pt"
    torch.save({"model": {}}, no_cfg)
    one_line_error(run(["fairseq-compress", "info", "--path", no_cfg], check=False),
                   "fairseq-compress info: error: --path", "holds no training config")
