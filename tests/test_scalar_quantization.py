"""Scalar quantization: values against torch's per-channel quantizer, bit
packing, the compressed checkpoint (int codes, ties stored once, bytes), the
stock fairseq loaders on it, and bad input."""
import json

import pytest
import torch
from conftest import USER_DIR, run
from fairseq import checkpoint_utils

import fairseq_compress  # noqa: F401  (installs the loader)
from fairseq_compress.checkpoint_safety import load_state
from fairseq_compress.compress.checkpoint_format import FORMAT_KEY, encode_int, int_decode, pack_bits, unpack_bits
from fairseq_compress.compress.scalar import quantize_checkpoint


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


@pytest.fixture(scope="module")
def int4_checkpoint(mt_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("scalar") / "int4.pt"
    quantize_checkpoint(mt_checkpoint, 4, out)
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


def test_bad_input(mt_checkpoint, int4_checkpoint, tmp_path):
    out = tmp_path / "out.pt"
    quantize = ["fairseq-compress", "quantize", "--out", out]
    for args, fragment in [
        (["--path", mt_checkpoint, "--bits", "9"], "--bits 9: allowed values are 2, 3, 4, 5, 6, 7, 8"),
        (["--path", int4_checkpoint, "--bits", "8"], "is already compressed"),
        (["--path", tmp_path / "missing.pt", "--bits", "8"], "--path"),
    ]:
        result = run(quantize + args, check=False)
        assert result.returncode != 0
        last = result.stderr.strip().splitlines()[-1]
        assert "error: " in last and fragment in last, result.stderr[-2000:]
    assert not out.exists()
    result = run(["fairseq-compress", "quantize", "--path", mt_checkpoint, "--bits", "8", "--out", mt_checkpoint],
                 check=False)
    assert result.returncode != 0 and "would overwrite --path" in result.stderr
