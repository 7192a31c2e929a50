"""--prune-granularity head / neuron / layer: whole heads and FFN neurons masked in training, by the
L2 norm of the weights they own or Michel et al.'s gradient importance, and whole layers gated off;
fairseq-compress shrink removes them and computes the same function."""
import json

import pytest
import torch
from fairseq.modules import MultiheadAttention
from torch import nn

from fairseq_compress.compress.structured_pruning import accumulate_importance, check_granularities, layer_keeps
from fairseq_compress.errors import ConfigError
from fairseq_compress.modules.layer_gates import drop_gates, set_gate
from fairseq_compress.tasks.pruning import PruningOptions, attach_masks, check_options, update_masks

from conftest import TRAIN_MT, USER_DIR, one_line_error, run


class FeedForward(nn.Module):
    def __init__(self, width=8, neurons=6):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, neurons), nn.Linear(neurons, width)


def mask_of(linear):
    return linear.parametrizations.weight[0].mask


def attention_with_weak_heads(weak, heads=4, width=16):
    torch.manual_seed(0)
    attention = MultiheadAttention(width, heads, self_attention=True)
    head_dim = width // heads
    with torch.no_grad():
        for h in weak:
            rows = slice(h * head_dim, (h + 1) * head_dim)
            for proj in (attention.q_proj, attention.k_proj, attention.v_proj):
                proj.weight[rows] *= 0.01
            attention.out_proj.weight[:, rows] *= 0.01
    return attention


def reference_head_norms(attention):
    head_dim = attention.head_dim
    squares = sum(p.weight.detach().view(attention.num_heads, head_dim, -1).pow(2).sum((1, 2))
                  for p in (attention.q_proj, attention.k_proj, attention.v_proj))
    squares += attention.out_proj.weight.detach().t().reshape(attention.num_heads, head_dim, -1).pow(2).sum((1, 2))
    return squares.sqrt()


def test_head_masks_remove_the_weakest_heads_whole():
    attention = attention_with_weak_heads(weak=[1, 3])
    norms = reference_head_norms(attention)
    assert set(norms.argsort()[:2].tolist()) == {1, 3}
    model = nn.ModuleDict({"attn": attention})
    cfg = PruningOptions(prune_granularity="head", prune_targets="proj", prune_scope="layer")
    attach_masks(model, cfg)
    update_masks(model, cfg, 0.5)
    kept_rows = torch.tensor([h in (0, 2) for h in range(4) for _ in range(4)])
    for proj in ("q_proj", "k_proj", "v_proj"):
        assert torch.equal(mask_of(getattr(attention, proj)), kept_rows.view(-1, 1).expand(16, 16))
    assert torch.equal(mask_of(attention.out_proj), kept_rows.view(1, -1).expand(16, 16))


def test_neuron_masks_remove_fc1_rows_with_their_fc2_columns():
    torch.manual_seed(0)
    layer = FeedForward()
    with torch.no_grad():
        layer.fc1.weight[[0, 4]] *= 0.01
        layer.fc2.weight[:, [0, 4]] *= 0.01
    model = nn.ModuleDict({"layer": layer})
    cfg = PruningOptions(prune_granularity="neuron", prune_targets="fc", prune_scope="layer")
    attach_masks(model, cfg)
    update_masks(model, cfg, 2 / 6)
    kept = torch.tensor([False, True, True, True, False, True])
    assert torch.equal(mask_of(layer.fc1), kept.view(-1, 1).expand(6, 8))
    assert torch.equal(mask_of(layer.fc2), kept.view(1, -1).expand(8, 6))


def test_global_scope_never_empties_a_module_and_masks_only_grow():
    strong, weak = attention_with_weak_heads(weak=[]), attention_with_weak_heads(weak=[0, 1, 2, 3])
    model = nn.ModuleDict({"a": strong, "b": weak})
    cfg = PruningOptions(prune_granularity="head", prune_targets="proj", prune_scope="global")
    attach_masks(model, cfg)
    update_masks(model, cfg, 0.25)
    first = mask_of(weak.out_proj).clone()
    update_masks(model, cfg, 0.5)
    heads_kept = mask_of(weak.out_proj).view(16, 4, 4).any(0).any(1)
    assert heads_kept.sum() == 1  # its 4 heads are the 4 weakest of 8, but one stays
    assert mask_of(strong.out_proj).view(16, 4, 4).any(0).any(1).all()
    assert not (mask_of(weak.out_proj) & ~first).any()


def test_granularities_combine_as_a_logical_and():
    attention = attention_with_weak_heads(weak=[2])
    model = nn.ModuleDict({"attn": attention})
    cfg = PruningOptions(prune_granularity="weight,head", prune_targets="proj", prune_scope="layer")
    attach_masks(model, cfg)
    update_masks(model, cfg, 0.25)
    mask = mask_of(attention.q_proj)
    assert not mask[8:12].any()  # head 2, whole
    assert mask.float().mean() < 0.75  # and single weights of the other heads
    assert mask[:8].any() and mask[12:].any()


@pytest.mark.parametrize("text", ["layers", "head,head", "", "weights"])
def test_unknown_granularities_are_refused(text):
    with pytest.raises(ConfigError, match="--prune-granularity"):
        check_granularities(text)


def test_a_granularity_the_targets_lack_is_refused():
    model = nn.ModuleDict({"layer": FeedForward()})
    with pytest.raises(ConfigError, match="--prune-granularity head: no attention module"):
        attach_masks(model, PruningOptions(prune_granularity="head", prune_targets="fc"))


def test_trained_head_and_neuron_masks_shrink_to_the_same_model(mt_data, tmp_path):
    from fairseq_compress.model_loading import load_model

    save = tmp_path / "pruned"
    run(TRAIN_MT + [mt_data, "--arch", "transformer_l2_h128", "--task", "translation_pruning", "--max-update", "4",
                    "--prune-granularity", "head,neuron", "--prune-sparsity", "0.5", "--prune-start-update", "2",
                    "--prune-scope", "layer",
                    "--save-dir", save])
    masked = save / "checkpoint_last.pt"
    small = tmp_path / "small.pt"
    shapes = json.loads(run(["fairseq-compress", "shrink", "--path", masked, "--out", small]).stdout)["layer_shapes"]
    layers = shapes["encoder.layers"] + shapes["decoder.layers"]
    # transformer_l2_h128: 6 attention modules of 2 heads, 4 FFNs of 512 neurons; half of each
    assert [layer[m] for layer in layers for m in ("self_attn", "encoder_attn") if m in layer] == [1] * 6
    assert [layer["ffn"] for layer in layers] == [256] * 4
    models = {name: load_model(path, mt_data) for name, path in (("masked", masked), ("small", small))}
    task = models["masked"][1]
    task.load_dataset("valid")
    batch = next(task.get_batch_iterator(task.dataset("valid"), max_tokens=1024).next_epoch_itr(shuffle=False))
    with torch.no_grad():
        outputs = {name: model(**batch["net_input"])[0] for name, (model, _, _) in models.items()}
    torch.testing.assert_close(outputs["small"], outputs["masked"], rtol=1e-4, atol=1e-4)


def head_gate_gradients(attention, x):
    """Reference for Michel et al.'s importance: |dL/d xi_h| with an explicit gate xi_h on each head's
    output (its columns of out_proj), L = sum of the attention output."""
    gates = torch.ones(attention.num_heads, requires_grad=True)
    weight = attention.out_proj.weight
    gated = weight * gates.repeat_interleave(attention.head_dim).view(1, -1)
    q = nn.functional.linear(x, attention.q_proj.weight, attention.q_proj.bias)
    k = nn.functional.linear(x, attention.k_proj.weight, attention.k_proj.bias)
    v = nn.functional.linear(x, attention.v_proj.weight, attention.v_proj.bias)
    t, b, _ = x.shape
    split = lambda y: y.view(t, b * attention.num_heads, attention.head_dim).transpose(0, 1)  # noqa: E731
    probs = torch.softmax(split(q) * attention.scaling @ split(k).transpose(1, 2), -1)
    heads = (probs @ split(v)).transpose(0, 1).reshape(t, b, -1)
    nn.functional.linear(heads, gated, attention.out_proj.bias).sum().backward()
    return gates.grad.abs()


def test_gradient_importance_is_the_head_gate_gradient():
    attention = attention_with_weak_heads(weak=[])
    model = nn.ModuleDict({"attn": attention})
    cfg = PruningOptions(prune_granularity="head", prune_targets="proj", prune_score="gradient")
    groups = attach_masks(model, cfg)
    x = torch.randn(5, 3, 16)
    reference = head_gate_gradients(attention, x)
    attention.zero_grad()
    attention(x, x, x)[0].sum().backward()
    accumulate_importance(groups)
    importance = mask_of_module(attention.out_proj).importance
    torch.testing.assert_close(importance, reference / reference.sum())  # one step's shares
    accumulate_importance(groups)  # a second step adds its shares
    torch.testing.assert_close(importance, 2 * reference / reference.sum())


def test_gradient_importance_stays_float32_in_a_half_model():
    """--fp16 calls model.half() after the task built the model: the importance accumulated over
    many steps stays float32 (in fp16, 1024 + 0.25 == 1024) and still follows the model's device."""
    attention = attention_with_weak_heads(weak=[])
    model = nn.ModuleDict({"attn": attention})
    groups = attach_masks(model, PruningOptions(prune_granularity="head", prune_targets="proj", prune_score="gradient"))
    model.half().to("cpu")
    x = torch.randn(5, 3, 16, dtype=torch.half)
    attention(x, x, x)[0].float().sum().backward()
    importance = mask_of_module(attention.out_proj).importance
    assert importance.dtype == torch.float32
    accumulate_importance(groups)
    one_step = importance.clone()
    for _ in range(4095):
        accumulate_importance(groups)
    torch.testing.assert_close(importance, 4096 * one_step, rtol=1e-4, atol=0)  # fp32 rounding over 4096 adds


def test_gradient_score_removes_the_least_important_heads():
    attention = attention_with_weak_heads(weak=[])
    model = nn.ModuleDict({"attn": attention})
    cfg = PruningOptions(prune_granularity="head", prune_targets="proj", prune_score="gradient", prune_scope="layer")
    attach_masks(model, cfg)
    importance = mask_of_module(attention.out_proj).importance
    importance.copy_(torch.tensor([0.4, 0.1, 0.3, 0.2]))  # unlike the weights' norms, which are all alike
    update_masks(model, cfg, 0.5)
    assert mask_of(attention.out_proj).view(16, 4, 4).any(0).any(1).tolist() == [True, False, True, False]


def test_gradient_score_needs_heads_or_neurons():
    with pytest.raises(ConfigError, match="--prune-score gradient ranks heads and neurons"):
        check_options(PruningOptions(prune_granularity="weight", prune_score="gradient", ddp_backend="legacy_ddp"))


def mask_of_module(linear):
    return linear.parametrizations.weight[0]


@pytest.mark.parametrize("n_layers, removed", [(3, [[], [1], [1, 2], [1, 2]]), (6, [[], [5, 3], [5, 3, 1], [5, 3, 1, 2, 4]])])
def test_layers_are_removed_evenly_spaced_and_for_good(n_layers, removed):
    stack = [object()] * n_layers
    for sparsity, expected in zip((0.0, 0.34, 0.5, 0.99), removed):
        assert [i for i, kept in enumerate(layer_keeps(stack, sparsity)) if not kept] == sorted(expected)


def encoder_layers(n_layers=3, width=16):
    from argparse import Namespace

    from fairseq.modules.transformer_layer import TransformerEncoderLayer

    args = Namespace(encoder_embed_dim=width, encoder_ffn_embed_dim=32, encoder_attention_heads=2, dropout=0.0,
                     attention_dropout=0.0, activation_dropout=0.0, encoder_normalize_before=False)
    torch.manual_seed(0)
    return nn.ModuleDict({"layers": nn.ModuleList([TransformerEncoderLayer(args) for _ in range(n_layers)])})


def test_a_gated_off_layer_computes_the_identity_and_its_gate_is_saved():
    model = encoder_layers().eval()
    cfg = PruningOptions(prune_granularity="layer", prune_targets="fc", prune_sparsity=0.34)
    attach_masks(model, cfg)
    x = torch.randn(4, 2, 16)
    layers = model["layers"]
    outputs = [layer(x, None) for layer in layers]
    update_masks(model, cfg, 0.34)
    assert [layer.prune_layer_on for layer in layers] == [True, False, True]
    assert torch.equal(layers[1](x, None), x)
    torch.testing.assert_close(layers[0](x, None), outputs[0])
    # saved and restored: a fresh gated model loads the gate and skips the same layer
    restored = encoder_layers()
    attach_masks(restored, cfg)
    restored.load_state_dict(model.state_dict())
    assert [layer.prune_layer_on for layer in restored["layers"]] == [True, False, True]
    # a model without gates refuses it in one line
    with pytest.raises(ConfigError, match=r"has layers removed by --prune-granularity layer \(layers\.1\)"):
        drop_gates(model.state_dict())


def test_a_gated_off_layer_gets_zero_gradients():
    model = encoder_layers().train()
    cfg = PruningOptions(prune_granularity="layer", prune_targets="fc")
    attach_masks(model, cfg)
    set_gate(model["layers"][1], False)
    x = torch.randn(4, 2, 16, requires_grad=True)
    y = x
    for layer in model["layers"]:
        y = layer(y, None)
    y.sum().backward()
    skipped = [p.grad for p in model["layers"][1].parameters()]
    assert all(g is not None and not g.any() for g in skipped)  # no unused parameter for DDP


def test_a_gated_off_half_layer_passes_its_input_through_in_training():
    """Under --fp16 the zero-times-parameters term that keeps a skipped layer's parameters in the
    graph stays 0 when their fp16 sum overflows (512 weights of 200: inf, and inf * 0 = NaN)."""
    model = encoder_layers().train()
    attach_masks(model, PruningOptions(prune_granularity="layer", prune_targets="fc"))
    layer = model["layers"][1]
    set_gate(layer, False)
    model.half()
    with torch.no_grad():
        layer.fc1.parametrizations.weight.original.fill_(200)
    x = torch.randn(4, 2, 16, dtype=torch.half, requires_grad=True)
    y = layer(x, None)
    assert torch.equal(y, x)
    y.sum().backward()
    assert all(p.grad is not None and not p.grad.any() for p in layer.parameters())


def test_trained_layer_masks_shrink_and_load_in_stock_generate(mt_data, tmp_path):
    from fairseq_compress.model_loading import load_model

    save = tmp_path / "pruned"
    out = run(TRAIN_MT + [mt_data, "--arch", "transformer_l2_h128", "--task", "translation_pruning", "--max-update", "4",
                          "--prune-granularity", "layer,head", "--prune-score", "gradient", "--prune-sparsity", "0.5",
                          "--prune-start-update", "2", "--save-dir", save, "--log-format", "json"]).stdout
    assert '"train_layers_kept": "0.5"' in out
    masked = save / "checkpoint_last.pt"
    refused = run(["fairseq-generate", mt_data, "--user-dir", USER_DIR, "--cpu", "--path", masked, "--gen-subset", "valid",
                   "--max-sentences", "8", "--max-len-b", "5"], check=False)
    one_line_error(refused, "has layers removed by --prune-granularity layer", "fairseq-compress shrink")
    small = tmp_path / "small.pt"
    shapes = json.loads(run(["fairseq-compress", "shrink", "--path", masked, "--out", small]).stdout)["layer_shapes"]
    assert [len(shapes[stack]) for stack in ("encoder.layers", "decoder.layers")] == [1, 1]  # layer 1 of 2 removed
    assert all(layer["self_attn"] == 1 for stack in shapes.values() for layer in stack)
    refused = run(["fairseq-compress", "shrink", "--path", masked, "--out", tmp_path / "none.pt", "--layers-keep", "1"],
                  check=False)
    one_line_error(refused, "--layers-keep 1: none of these layers of", "survived the checkpoint's layer pruning")
    assert not (tmp_path / "none.pt").exists()
    with pytest.raises(ConfigError, match="has layers removed by --prune-granularity layer"):
        load_model(masked, mt_data)  # the offline tools' loader (export, ipq)
    small_model = load_model(small, mt_data)[0]
    pruning_task_model, task, _ = load_gated(masked, mt_data)
    task.load_dataset("valid")
    batch = next(task.get_batch_iterator(task.dataset("valid"), max_tokens=1024).next_epoch_itr(shuffle=False))
    with torch.no_grad():
        expected = pruning_task_model(**batch["net_input"])[0]
        torch.testing.assert_close(small_model(**batch["net_input"])[0], expected, rtol=1e-4, atol=1e-4)
    generated = run(["fairseq-generate", mt_data, "--user-dir", USER_DIR, "--cpu", "--path", small, "--gen-subset",
                     "valid", "--max-sentences", "8", "--max-len-b", "5"])
    assert "Translated 200 sentences" in generated.stderr  # fairseq-generate logs there


def load_gated(path, data):
    """The pruning task's own model of a layer-gated checkpoint (load_model refuses it)."""
    from fairseq import checkpoint_utils

    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(path)], arg_overrides={"data": str(data)})
    return models[0].eval(), task, cfg
