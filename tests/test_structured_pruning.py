"""--prune-granularity head / neuron: whole heads and FFN neurons masked in training, by the L2 norm
of the weights they own; fairseq-compress shrink removes them and computes the same function."""
import json

import pytest
import torch
from fairseq.modules import MultiheadAttention
from torch import nn

from fairseq_compress.compress.structured_pruning import check_granularities
from fairseq_compress.errors import ConfigError
from fairseq_compress.tasks.pruning import PruningOptions, attach_masks, update_masks

from conftest import TRAIN_MT, run


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


@pytest.mark.parametrize("text", ["layer", "head,head", "", "weights"])
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
