"""fairseq-compress shrink: heads, FFN neurons and layers removed for real, loaded by the stock tools."""
import json
import re

import pytest
import torch
from fairseq import checkpoint_utils

import fairseq_compress  # noqa: F401
from fairseq_compress.compress.shrink import head_ranking, kept_count, neuron_ranking

from conftest import TRAIN_MLM, TRAIN_MT, USER_DIR, one_line_error, run


def load(path):
    models, _ = checkpoint_utils.load_model_ensemble([str(path)])
    return models[0].eval()


def translate_batch(model):
    torch.manual_seed(0)
    vocab = model.encoder.embed_tokens.num_embeddings
    src = torch.randint(4, vocab, (3, 9))
    prev = torch.randint(4, vocab, (3, 7))
    with torch.no_grad():
        return model(src, torch.full((3,), 9), prev)[0]


def shrink(checkpoint, out, *flags):
    return json.loads(run(["fairseq-compress", "shrink", "--path", checkpoint, "--out", out, *flags]).stdout)


def test_keeping_everything_is_the_same_model(mt_checkpoint, tmp_path):
    shrink(mt_checkpoint, tmp_path / "same.pt")
    torch.testing.assert_close(translate_batch(load(tmp_path / "same.pt")), translate_batch(load(mt_checkpoint)))


def test_shrunk_model_equals_the_original_with_the_removed_units_zeroed(mt_checkpoint, tmp_path):
    shapes = shrink(mt_checkpoint, tmp_path / "small.pt", "--heads-keep", "0.5", "--ffn-keep", "0.25",
                    "--layers-keep", "1")["layer_shapes"]
    assert shapes == {"encoder.layers": [{"self_attn": 1, "ffn": 128}],
                      "decoder.layers": [{"self_attn": 1, "encoder_attn": 1, "ffn": 128}]}
    reference = load(mt_checkpoint)
    state = reference.state_dict()
    with torch.no_grad():
        for stack in ("encoder.layers", "decoder.layers"):
            layers = reference.get_submodule(stack)
            zero_layer(layers[0])  # removed: a pre-norm layer whose sublayers add nothing is the identity
            layer, prefix = layers[1], f"{stack}.1"
            for name in ("self_attn", "encoder_attn"):
                if hasattr(layer, name):
                    kept = head_ranking(state, f"{prefix}.{name}", 2)[:kept_count(2, 0.5)]
                    zero_heads(getattr(layer, name), kept)
            kept = neuron_ranking(state, prefix)[:kept_count(512, 0.25)]
            removed = [n for n in range(512) if n not in kept]
            layer.fc2.weight[:, removed] = 0
    small = load(tmp_path / "small.pt")
    assert sum(p.numel() for p in small.parameters()) < 0.8 * sum(p.numel() for p in reference.parameters())
    torch.testing.assert_close(translate_batch(small), translate_batch(reference))


def zero_layer(layer):
    for module in (layer.self_attn, getattr(layer, "encoder_attn", None), layer.fc2):
        if module is not None:
            out = module.out_proj if hasattr(module, "out_proj") else module
            out.weight.zero_()
            out.bias.zero_()


def zero_heads(attention, kept):
    for head in range(attention.num_heads):
        if head not in kept:
            attention.out_proj.weight[:, head * attention.head_dim:(head + 1) * attention.head_dim] = 0


def test_stock_tools_read_the_shrunk_checkpoint_and_compress_it(mt_checkpoint, mt_data, tmp_path):
    small = tmp_path / "small.pt"
    shrink(mt_checkpoint, small, "--heads-keep", "0.5", "--ffn-keep", "0.5")
    result = run(["fairseq-generate", mt_data, "--user-dir", USER_DIR, "--path", small, "--beam", "2",
                  "--max-sentences", "50", "--max-len-b", "10"])
    assert result.stdout.count("\nH-") == 200
    sizes = [json.loads(run(["fairseq-compress", "size", "--json", "--path", p]).stdout)["model_params"]
             for p in (mt_checkpoint, small)]
    assert sizes[1] < 0.8 * sizes[0]
    run(["fairseq-compress", "quantize", "--path", small, "--bits", "8", "--out", tmp_path / "small_int8.pt"])
    result = run(["fairseq-generate", mt_data, "--user-dir", USER_DIR, "--path", tmp_path / "small_int8.pt",
                  "--beam", "2", "--max-sentences", "50", "--max-len-b", "10"])
    assert result.stdout.count("\nH-") == 200
    # shrinking a shrunk model reads its own per-layer shapes
    assert shrink(small, tmp_path / "smaller.pt", "--heads-keep", "0.5")["layer_shapes"]["encoder.layers"][0] == \
        {"self_attn": 1, "ffn": 256}


@pytest.mark.parametrize("flags,fragment", [
    (["--heads-keep", "0"], "--heads-keep must be in (0, 1], got 0.0"),
    (["--ffn-keep", "1.5"], "--ffn-keep must be in (0, 1], got 1.5"),
    (["--layers-keep", "0,0"], "--layers-keep 0,0: each index once, in [0, 1]"),
    (["--layers-keep", "2"], "--layers-keep 2: each index once, in [0, 1]"),
    (["--layers-keep", "first"], "--layers-keep must be comma-separated layer indices, got 'first'"),
])
def test_bad_input(mt_checkpoint, tmp_path, flags, fragment):
    out = tmp_path / "out.pt"
    one_line_error(run(["fairseq-compress", "shrink", "--path", mt_checkpoint, "--out", out, *flags], check=False),
                   "fairseq-compress shrink: error: ", fragment)
    assert not out.exists()


def test_rankings_are_fairseqs_adaprune_scores(mt_checkpoint):
    model = load(mt_checkpoint)
    state = model.state_dict()
    for index, layer in enumerate(model.encoder.layers):
        prefix = f"encoder.layers.{index}"
        weakest = set(layer._get_fc_rank(remove_num=100))
        assert set(neuron_ranking(state, prefix)[-100:]) == weakest
        attention = layer.self_attn
        strongest = [start // attention.head_dim for start, _ in attention._get_reserve_head_index(num_heads_to_keep=1)]
        assert head_ranking(state, f"{prefix}.self_attn", attention.num_heads)[:1] == strongest


def test_refuses_compressed_files_other_archs_and_an_existing_out(mt_checkpoint, tmp_path):
    int4 = tmp_path / "int4.pt"
    run(["fairseq-compress", "quantize", "--path", mt_checkpoint, "--bits", "4", "--out", int4])
    other = tmp_path / "lstm.pt"
    state = torch.load(mt_checkpoint, weights_only=True)
    state["cfg"]["model"].arch, state["cfg"]["model"]._name = "lstm", "lstm"
    torch.save(state, other)
    shrink = ["fairseq-compress", "shrink", "--heads-keep", "0.5", "--out", tmp_path / "out.pt", "--path"]
    one_line_error(run(shrink + [int4], check=False), "is already compressed; start from the dense checkpoint")
    one_line_error(run(shrink + [other], check=False), "shrink supports the plugin's transformer_l*_h*, roberta_l*_h* "
                                                       "and ELECTRA archs and fairseq's transformer and roberta ones, "
                                                       "not lstm")
    (tmp_path / "out.pt").write_bytes(b"mine")
    one_line_error(run(shrink + [mt_checkpoint], check=False), "exists; pass --force to replace it")
    assert (tmp_path / "out.pt").read_bytes() == b"mine"


STOCK_ROBERTA_L2_H128 = ["roberta", "--encoder-layers", "2", "--encoder-embed-dim", "128", "--encoder-ffn-embed-dim",
                         "512", "--encoder-attention-heads", "2"]


@pytest.mark.parametrize("arch", [["roberta_l2_h128"], STOCK_ROBERTA_L2_H128], ids=["plugin", "stock"])
def test_roberta_shrinks_and_keeping_everything_is_the_same_model(arch, mlm_data, tmp_path):
    en_bin, _ = mlm_data
    run(["fairseq-train", en_bin, *TRAIN_MLM, "--task", "masked_lm", "--criterion", "masked_lm", "--arch",
         *arch, "--tokens-per-sample", "64", "--max-tokens", "1024", "--max-update", "2",
         "--save-dir", tmp_path])
    checkpoint = tmp_path / "checkpoint_last.pt"
    tokens = torch.randint(4, 1000, (2, 16))

    def encode(path):
        with torch.no_grad():
            return load(path)(tokens)[0]

    shrink(checkpoint, tmp_path / "same.pt")
    torch.testing.assert_close(encode(tmp_path / "same.pt"), encode(checkpoint))
    shapes = shrink(checkpoint, tmp_path / "small.pt", "--heads-keep", "0.5", "--ffn-keep", "0.5",
                    "--layers-keep", "0")["layer_shapes"]
    assert shapes == {"encoder.sentence_encoder.layers": [{"self_attn": 1, "ffn": 256}]}
    assert encode(tmp_path / "small.pt").shape == encode(checkpoint).shape


def test_fine_tuning_a_shrunk_model_restores_it_and_resumes(mt_checkpoint, mt_data, tmp_path):
    small = tmp_path / "small.pt"
    shrink(mt_checkpoint, small, "--heads-keep", "0.5", "--ffn-keep", "0.5", "--layers-keep", "0")

    def train(max_update, *restore):
        return run(TRAIN_MT + [mt_data, "--arch", "transformer_l2_h128", "--save-dir", tmp_path / "ft",
                               "--max-update", max_update, *restore]).stdout

    train(3, "--restore-file", small, "--reset-optimizer", "--reset-dataloader", "--reset-meters")
    tuned = load(tmp_path / "ft/checkpoint_last.pt")
    assert len(tuned.encoder.layers) == 1 and tuned.encoder.layers[0].fc1.out_features == 256
    assert tuned.decoder.layers[0].encoder_attn.num_heads == 1
    log = train(5)  # resumes its checkpoint_last.pt, built from the command line's 2-layer arch
    assert re.search(r"Loaded checkpoint \S*ft/checkpoint_last.pt \(epoch \d+ @ 3 updates\)", log), log[-2000:]
    assert "num_updates 5" in log


def test_a_stock_transformer_shrinks_to_the_plugins_twin_arch(mt_data, tmp_path):
    save = tmp_path / "stock"
    run(TRAIN_MT + [mt_data, "--arch", "transformer", "--encoder-layers", "2", "--decoder-layers", "2",
                    "--encoder-embed-dim", "64", "--decoder-embed-dim", "64", "--encoder-ffn-embed-dim", "128",
                    "--decoder-ffn-embed-dim", "128", "--share-all-embeddings", "--max-update", "2",
                    "--save-dir", save])
    checkpoint = save / "checkpoint_last.pt"
    shrink(checkpoint, tmp_path / "same.pt")
    assert torch.load(tmp_path / "same.pt", weights_only=False)["cfg"]["model"].arch == "shrunk_transformer"
    torch.testing.assert_close(translate_batch(load(tmp_path / "same.pt")), translate_batch(load(checkpoint)))
    shrink(checkpoint, tmp_path / "small.pt", "--heads-keep", "0.5", "--layers-keep", "0")
    small = load(tmp_path / "small.pt")
    assert len(small.encoder.layers) == 1 and small.encoder.layers[0].self_attn.num_heads == 4
    generated = run(["fairseq-generate", mt_data, "--user-dir", USER_DIR, "--cpu", "--path", tmp_path / "small.pt",
                     "--gen-subset", "valid", "--max-sentences", "50", "--max-len-b", "5"])
    assert "Translated 200 sentences" in generated.stderr  # fairseq-generate logs there


def attention_state(prefix, dim, strengths):
    """q/k/v/out_proj of an attention module of len(strengths) heads, head h's q/k/v rows scaled by strengths[h]."""
    head_dim = dim // len(strengths)
    scale = torch.tensor(strengths, dtype=torch.float).repeat_interleave(head_dim)
    state = {f"{prefix}.{proj}.{kind}": (torch.rand(dim, dim) if kind == "weight" else torch.rand(dim))
             * (scale[:, None] if kind == "weight" else scale) for proj in ("q_proj", "k_proj", "v_proj")
             for kind in ("weight", "bias")}
    state.update({f"{prefix}.out_proj.weight": torch.rand(dim, dim), f"{prefix}.out_proj.bias": torch.rand(dim)})
    return state


def ffn_state(prefix, dim, width):
    return {f"{prefix}.fc1.weight": torch.rand(width, dim), f"{prefix}.fc1.bias": torch.rand(width),
            f"{prefix}.fc2.weight": torch.rand(dim, width), f"{prefix}.fc2.bias": torch.rand(dim)}


def test_heads_are_sliced_by_each_stacks_own_head_count():
    """An encoder of 4 heads and a decoder of 2 (head sizes 2 and 4 at width 8): each attention module keeps
    its strongest heads' rows of q/k/v and columns of out_proj, with its stack's head size; a second shrink
    reads the head counts from the first one's layer shapes."""
    from fairseq_compress.compress.shrink import shrink_state

    torch.manual_seed(0)
    state = {**attention_state("encoder.layers.0.self_attn", 8, [1, 10, 100, 1000]),
             **attention_state("decoder.layers.0.self_attn", 8, [1000, 1]),
             **attention_state("decoder.layers.0.encoder_attn", 8, [1, 1000]),
             **ffn_state("encoder.layers.0", 8, 6), **ffn_state("decoder.layers.0", 8, 6)}
    model_cfg = {"encoder_attention_heads": 4, "decoder_attention_heads": 2}
    shrunk, shapes, layers = shrink_state(state, model_cfg, heads_keep=0.5, ffn_keep=1.0, layers_keep=None)
    assert shapes == {"encoder.layers": [{"self_attn": 2, "ffn": 6}],
                      "decoder.layers": [{"self_attn": 1, "encoder_attn": 1, "ffn": 6}]}
    assert layers == {"encoder.layers": 1, "decoder.layers": 1}
    for prefix, rows in (("encoder.layers.0.self_attn", slice(4, 8)),  # heads 2 and 3 of size 2
                         ("decoder.layers.0.self_attn", slice(0, 4)),  # head 0 of size 4
                         ("decoder.layers.0.encoder_attn", slice(4, 8))):  # head 1 of size 4
        for proj in ("q_proj", "k_proj", "v_proj"):
            assert torch.equal(shrunk[f"{prefix}.{proj}.weight"], state[f"{prefix}.{proj}.weight"][rows])
            assert torch.equal(shrunk[f"{prefix}.{proj}.bias"], state[f"{prefix}.{proj}.bias"][rows])
        assert torch.equal(shrunk[f"{prefix}.out_proj.weight"], state[f"{prefix}.out_proj.weight"][:, rows])
        assert torch.equal(shrunk[f"{prefix}.out_proj.bias"], state[f"{prefix}.out_proj.bias"])

    again, shapes, _ = shrink_state(shrunk, {**model_cfg, "layer_shapes": json.dumps(shapes)}, 0.5, 1.0, None)
    assert [shapes[stack][0]["self_attn"] for stack in ("encoder.layers", "decoder.layers")] == [1, 1]
    assert torch.equal(again["encoder.layers.0.self_attn.q_proj.weight"],  # head 3 of the original: size 2
                       state["encoder.layers.0.self_attn.q_proj.weight"][6:8])
