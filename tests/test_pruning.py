"""Pruning tasks: the cubic schedule, magnitude masks (global and per layer)
against a sort-based reference, masks seen by fairseq's attention, QAT against
the export, fairseq-train end to end on the three tasks (stock arch included),
masks restored on resume, stock loaders on pruned checkpoints, bad input."""
import re
import sys

import pytest
import torch
from conftest import ROOT, TRAIN_MT, USER_DIR, one_line_error, run
from fairseq.models import BaseFairseqModel
from fairseq.modules import MultiheadAttention
from torch import nn
from torch.nn.utils import parametrize

import fairseq_compress  # noqa: F401
from fairseq_compress.compress.checkpoint_format import encode_int, int_decode
from fairseq_compress.modules.weight_parametrizations import PruningMask, accept_dense_weight
from fairseq_compress.tasks.pruning import (
    PruningMixin,
    PruningOptions,
    attach_masks,
    is_mask_update,
    measured_sparsity,
    target_sparsity,
    update_masks,
)


def options(**kwargs):
    return PruningOptions(**kwargs)


def test_cubic_schedule_values():
    cfg = options(prune_sparsity=0.8, prune_schedule="gradual", prune_start_update=100, prune_end_update=300,
                  prune_frequency=50)
    assert target_sparsity(cfg, 99) == 0 and target_sparsity(cfg, 100) == 0
    assert target_sparsity(cfg, 200) == pytest.approx(0.8 * (1 - 0.5 ** 3))
    assert target_sparsity(cfg, 250) == pytest.approx(0.8 * (1 - 0.25 ** 3))
    assert target_sparsity(cfg, 300) == target_sparsity(cfg, 10_000) == 0.8
    assert [u for u in range(400) if is_mask_update(cfg, u)] == [100, 150, 200, 250, 300]
    oneshot = options(prune_sparsity=0.5, prune_start_update=7)
    assert [u for u in range(20) if is_mask_update(oneshot, u)] == [7]
    assert target_sparsity(oneshot, 6) == 0 and target_sparsity(oneshot, 7) == 0.5


def reference_keep(scores, sparsity):
    """Keep everything above the k-th smallest score (no ties in random data)."""
    k = round(sparsity * scores.numel())
    threshold = scores.flatten().sort().values[k - 1]
    return scores > threshold


def two_layers():
    torch.manual_seed(0)
    return nn.ModuleDict({"a": nn.Linear(16, 8), "b": nn.Linear(8, 4)})


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_magnitude_masks_match_reference(scope):
    model = two_layers()
    weights = {name: module.weight.detach().clone() for name, module in model.items()}
    attach_masks(model, options(prune_targets="a|b"))
    update_masks(model, options(prune_scope=scope), 0.5)
    if scope == "global":
        flat = torch.cat([w.abs().flatten() for w in weights.values()])
        keep = reference_keep(flat, 0.5).split([w.numel() for w in weights.values()])
        expected = {name: k.reshape(w.shape) for (name, w), k in zip(weights.items(), keep)}
    else:
        expected = {name: reference_keep(w.abs(), 0.5) for name, w in weights.items()}
    for name, module in model.items():
        assert torch.equal(module.parametrizations.weight[0].mask, expected[name])
        torch.testing.assert_close(module.weight, weights[name] * expected[name], atol=0, rtol=0)
    assert measured_sparsity(model) == pytest.approx(0.5)


def concatenated_topk_masks(weights, sparsity):
    """The global masks as they were computed before: one topk over a concatenated copy of all weights."""
    scores = torch.cat([w.abs().flatten() for w in weights])
    keep = torch.zeros(scores.numel(), dtype=torch.bool)
    keep[torch.topk(scores, round((1 - sparsity) * scores.numel())).indices] = True
    return [k.reshape(w.shape) for k, w in zip(keep.split([w.numel() for w in weights]), weights)]


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.9, 0.999])
def test_global_threshold_without_concatenation_equals_topk(sparsity, monkeypatch):
    from fairseq_compress.compress import magnitude_pruning

    monkeypatch.setattr(magnitude_pruning, "CHUNK", 97)  # several chunks per tensor
    torch.manual_seed(sparsity * 1000)
    weights = [torch.randn(64, 32), torch.randn(128, 64) * 0.1, torch.randn(16, 16) * 3]
    weights[1][:10] = 0  # already pruned rows score 0
    actual = magnitude_pruning.magnitude_masks(weights, sparsity, "global")
    for a, e in zip(actual, concatenated_topk_masks(weights, sparsity)):
        assert torch.equal(a, e)


def test_global_threshold_keeps_the_exact_count_under_ties():
    """fp16 weights take few distinct values: ties at the threshold are common."""
    from fairseq_compress.compress.magnitude_pruning import magnitude_masks

    weights = [torch.tensor([[1.0, 2.0, 2.0], [2.0, 3.0, 0.0]], dtype=torch.float16), torch.full((2, 2), 2.0)]
    keeps = magnitude_masks(weights, 0.5, "global")  # 10 weights, keep 5: the 3 and four of the six 2s
    assert sum(int(k.sum()) for k in keeps) == 5
    assert keeps[0][1, 1] and not keeps[0][0, 0] and not keeps[0][1, 2]


def test_masks_only_grow_and_pruned_weights_get_no_gradient():
    model = two_layers()
    attach_masks(model, options(prune_targets="a|b"))
    update_masks(model, options(prune_scope="global"), 0.3)
    first = model["a"].parametrizations.weight[0].mask.clone()
    update_masks(model, options(prune_scope="global"), 0.6)
    second = model["a"].parametrizations.weight[0].mask
    assert not (second & ~first).any()  # nothing pruned comes back
    model["b"](model["a"](torch.randn(3, 16))).sum().backward()
    grad = model["a"].parametrizations.weight.original.grad
    assert (grad[~second] == 0).all() and (grad[second] != 0).any()


def test_attention_reading_weights_directly_sees_the_mask():
    torch.manual_seed(0)
    attention = MultiheadAttention(32, 4, self_attention=True)
    reference = MultiheadAttention(32, 4, self_attention=True)
    reference.load_state_dict(attention.state_dict())
    attach_masks(attention, options(prune_targets="q_proj|out_proj"))
    update_masks(attention, options(prune_scope="layer"), 0.5)
    with torch.no_grad():
        for name in ("q_proj", "out_proj"):
            getattr(reference, name).weight.copy_(getattr(attention, name).weight)
    x = torch.randn(5, 2, 32)
    attention.eval(), reference.eval()
    torch.testing.assert_close(attention(x, x, x)[0], reference(x, x, x)[0])


def test_qat_forward_equals_the_int_export_and_passes_gradients_straight():
    model = nn.ModuleDict({"a": nn.Linear(16, 8)})
    attach_masks(model, options(prune_targets="a", qat_bits=4))
    update_masks(model, options(prune_scope="layer"), 0.25)
    original = model["a"].parametrizations.weight.original
    masked = original.detach() * model["a"].parametrizations.weight[0].mask
    entry = encode_int(masked, 4)
    torch.testing.assert_close(model["a"].weight, int_decode(entry["packed"], entry["scale"], 4, entry["shape"]),
                               atol=1e-6, rtol=0)
    model["a"].weight.sum().backward()
    assert torch.equal(original.grad, model["a"].parametrizations.weight[0].mask.float())


def test_dense_checkpoint_loads_into_a_masked_model():
    dense = nn.Linear(4, 3)
    masked = nn.Linear(4, 3)
    attach_masks(nn.ModuleDict({"x": masked}), options(prune_targets="x"))
    masked.load_state_dict(dense.state_dict())
    torch.testing.assert_close(masked.weight, dense.weight, atol=0, rtol=0)
    assert masked.parametrizations.weight[0].mask.all()


PRUNE = ["--task", "translation_pruning", "--prune-sparsity", "0.6", "--prune-schedule", "gradual",
         "--prune-start-update", "2", "--prune-end-update", "8", "--prune-frequency", "2"]


def pruned_state(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def check_pruned(state, sparsity):
    masks = {k[: -len(".parametrizations.weight.0.mask")]: v for k, v in state.items() if k.endswith(".0.mask")}
    assert masks
    zeros = total = 0
    for prefix, mask in masks.items():
        original = state[prefix + ".parametrizations.weight.original"]
        assert (original[~mask] == 0).all()  # pruned weights stayed at zero through the optimizer steps
        zeros += int((~mask).sum())
        total += mask.numel()
    assert zeros / total == pytest.approx(sparsity, abs=1e-3)
    return masks


@pytest.fixture(scope="module")
def pruned_mt(mt_data, tmp_path_factory):
    save = tmp_path_factory.mktemp("pruned")
    result = run(TRAIN_MT + [mt_data, "--arch", "transformer_l2_h128", *PRUNE, "--max-update", "10",
                             "--log-interval", "1", "--log-format", "simple", "--save-dir", save])
    return save, result.stdout + result.stderr


def test_translation_pruning_end_to_end(pruned_mt):
    save, log = pruned_mt
    assert re.search(r"prune_target=0\.6, sparsity=0\.6", log), log[-3000:]
    check_pruned(pruned_state(save / "checkpoint_last.pt"), 0.6)


def test_resume_restores_masks_bitwise(pruned_mt, mt_data, tmp_path):
    save, _ = pruned_mt
    common = TRAIN_MT + [mt_data, "--arch", "transformer_l2_h128", *PRUNE, "--save-dir", tmp_path,
                         "--save-interval-updates", "5"]
    run(common + ["--max-update", "5"])
    run(common + ["--max-update", "10"])  # resumes from update 5 with its masks
    resumed, uninterrupted = pruned_state(tmp_path / "checkpoint_last.pt"), pruned_state(save / "checkpoint_last.pt")
    assert resumed.keys() == uninterrupted.keys()
    for key in uninterrupted:
        assert torch.equal(resumed[key], uninterrupted[key]), key


def test_stock_generate_and_restore_read_pruned_weights(pruned_mt, mt_data, tmp_path):
    save, _ = pruned_mt
    gen = run(["fairseq-generate", mt_data, "--user-dir", USER_DIR, "--cpu", "--path", save / "checkpoint_last.pt",
               "--gen-subset", "test", "--beam", "2", "--max-sentences", "50", "--max-len-b", "10",
               "--num-workers", "0"])
    assert "BLEU" in gen.stdout + gen.stderr
    run(TRAIN_MT + [mt_data, "--arch", "transformer_l2_h128", "--max-update", "2", "--save-dir", tmp_path,
                    "--restore-file", save / "checkpoint_last.pt", "--reset-optimizer", "--reset-dataloader",
                    "--reset-meters"])
    state = pruned_state(tmp_path / "checkpoint_last.pt")
    assert "encoder.layers.0.fc1.weight" in state and not any("parametrizations" in k for k in state)


def test_stock_arch_oneshot_from_a_dense_checkpoint(mt_checkpoint, mt_data, tmp_path):
    """--restore-file of an unpruned model, one-shot pruning at the first update, per-layer scope."""
    run(TRAIN_MT + [mt_data, "--arch", "transformer_l2_h128", "--task", "translation_pruning", "--prune-sparsity",
                    "0.7", "--prune-scope", "layer", "--max-update", "2", "--save-dir", tmp_path,
                    "--restore-file", mt_checkpoint, "--reset-optimizer", "--reset-dataloader", "--reset-meters"])
    masks = check_pruned(pruned_state(tmp_path / "checkpoint_last.pt"), 0.7)
    for mask in masks.values():
        assert (~mask).float().mean().item() == pytest.approx(0.7, abs=1e-3)
    stock = tmp_path / "stock"
    run(TRAIN_MT + [mt_data, "--arch", "transformer", "--encoder-layers", "1", "--decoder-layers", "1",
                    "--encoder-embed-dim", "64", "--decoder-embed-dim", "64", "--encoder-ffn-embed-dim", "128",
                    "--decoder-ffn-embed-dim", "128", "--share-all-embeddings", "--task", "translation_pruning",
                    "--prune-sparsity", "0.5", "--max-update", "2", "--save-dir", stock])
    check_pruned(pruned_state(stock / "checkpoint_last.pt"), 0.5)


def test_mlm_and_classification_pruning_with_qat(mlm_data, tmp_path):
    en_bin, cls_bin = mlm_data
    common = ["--user-dir", USER_DIR, "--cpu", "--optimizer", "adam", "--lr", "0.0005", "--num-workers", "0",
              "--no-progress-bar", "--no-epoch-checkpoints", "--max-update", "3", "--prune-sparsity", "0.5"]
    for arch, criterion in (("roberta_l2_h128", "masked_lm"), ("electra_tiny", "electra")):
        save = tmp_path / arch
        run(["fairseq-train", en_bin, "--task", "masked_lm_pruning", "--arch", arch, "--criterion", criterion,
             "--tokens-per-sample", "64", "--max-tokens", "1024", "--random-token-prob", "0", "--save-dir", save,
             *common])
        check_pruned(pruned_state(save / "checkpoint_last.pt"), 0.5)
    n_classes = len((cls_bin / "label/dict.txt").read_text().splitlines())
    save = tmp_path / "cls"
    run(["fairseq-train", cls_bin, "--task", "sentence_prediction_pruning", "--criterion", "sentence_prediction",
         "--arch", "roberta_l2_h128", "--num-classes", n_classes, "--max-positions", "64", "--shorten-method",
         "truncate", "--batch-size", "16", "--qat-bits", "8", "--save-dir", save, *common])
    check_pruned(pruned_state(save / "checkpoint_last.pt"), 0.5)


@pytest.mark.parametrize("flags,fragment", [
    (["--prune-sparsity", "1.0"], "--prune-sparsity must be in [0, 1), got 1.0"),
    (["--prune-schedule", "gradual", "--prune-start-update", "5", "--prune-end-update", "5"],
     "--prune-schedule gradual needs --prune-end-update > --prune-start-update (5), got 5"),
    (["--qat-bits", "9"], "--qat-bits must be one of 2, 3, 4, 5, 6, 7, 8, got 9"),
    (["--prune-targets", "nothing_matches"], "--prune-targets nothing_matches matches no Linear layer"),
])
def test_bad_input(mt_data, tmp_path, flags, fragment):
    result = run(TRAIN_MT + [mt_data, "--arch", "transformer_l2_h128", "--task", "translation_pruning",
                             "--max-update", "1", "--save-dir", tmp_path, *flags], check=False)
    assert one_line_error(result, fragment).startswith("error: ")
    assert not list(tmp_path.glob("*.pt"))


def test_quantize_export_of_a_pruned_run_is_sparse(pruned_mt, tmp_path):
    save, _ = pruned_mt
    out = tmp_path / "int8.pt"
    run(["fairseq-compress", "quantize", "--path", save / "checkpoint_last.pt", "--bits", "8", "--out", out])
    stored = torch.load(out, map_location="cpu", weights_only=True)["model"]
    assert stored["encoder.layers.0.fc1.weight"]["format"] == "sparse"
    assert not any("parametrizations" in name for name in stored)


def test_quant_noise_goes_in_under_the_mask():
    from fairseq_compress.modules.quant_noise import noised_parameters, pq_noise, swapped_parameters

    model = two_layers()
    attach_masks(model, options(prune_targets="a|b"))
    update_masks(model, options(prune_scope="layer"), 0.5)
    targets = noised_parameters(model, re.compile("^$"))
    original = model["a"].parametrizations.weight.original
    assert id(original) in targets
    torch.manual_seed(0)
    noised = {id(w): pq_noise(w, 0.5, 4)[0] for _, w in targets.values()}
    with swapped_parameters(model, noised):
        seen = model["a"].weight
    mask = model["a"].parametrizations.weight[0].mask
    torch.testing.assert_close(seen, noised[id(original)] * mask, atol=0, rtol=0)
    assert model["a"].parametrizations.weight.original is original  # restored


def test_pruning_task_with_quant_noise_criterion(mt_data, tmp_path):
    run(TRAIN_MT + [mt_data, "--arch", "transformer_l2_h128", *PRUNE, "--max-update", "6", "--save-dir", tmp_path,
                    "--criterion", "quant_noise", "--qn-criterion", "label_smoothed_cross_entropy",
                    "--qn-pq", "0.1"])
    check_pruned(pruned_state(tmp_path / "checkpoint_last.pt"), 0.6 * (1 - (1 - 2 / 6) ** 3))


class TwoLayers(BaseFairseqModel):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(6, 5), nn.Linear(5, 4)


def test_the_loading_model_decides_whether_masks_are_folded_or_kept():
    pruned = TwoLayers()
    parametrize.register_parametrization(pruned.fc1, "weight", PruningMask(pruned.fc1.weight))
    pruned.fc1.parametrizations.weight[0].mask[:, ::2] = False
    state = pruned.state_dict()
    assert set(state) == {"fc1.parametrizations.weight.original", "fc1.parametrizations.weight.0.mask",
                          "fc1.bias", "fc2.weight", "fc2.bias"}

    stock = TwoLayers()  # no parametrizations: reads original * mask
    stock.load_state_dict(dict(state))
    assert torch.equal(stock.fc1.weight, pruned.fc1.weight) and (stock.fc1.weight[:, ::2] == 0).all()

    masked = TwoLayers()  # in the same process, a model with masks keeps them
    parametrize.register_parametrization(masked.fc1, "weight", PruningMask(masked.fc1.weight))
    masked.load_state_dict(dict(state))
    assert torch.equal(masked.fc1.parametrizations.weight[0].mask, pruned.fc1.parametrizations.weight[0].mask)
    assert torch.equal(masked.fc1.parametrizations.weight.original, pruned.fc1.parametrizations.weight.original)

    # a dense checkpoint into a masked model (the pruning tasks register accept_dense_weight): nothing pruned yet
    masked.fc1.register_load_state_dict_pre_hook(accept_dense_weight)
    masked.load_state_dict(dict(stock.state_dict()))
    assert masked.fc1.parametrizations.weight[0].mask.all()
    assert torch.equal(masked.fc1.weight, stock.fc1.weight)


class TwoLayersTask:
    """The stock parent of a pruning task, reduced to building TwoLayers."""

    def __init__(self, cfg):
        self.cfg = cfg

    def build_model(self, cfg, from_checkpoint=False):
        torch.manual_seed(0)
        return TwoLayers()


class TwoLayersPruningTask(PruningMixin, TwoLayersTask):
    pass


def test_a_model_built_to_run_a_checkpoint_folds_its_parametrizations_once_loaded():
    """fairseq builds with from_checkpoint=True to run a checkpoint (fairseq-generate, fairseq-validate):
    original * mask and the fake quantization are computed once at load, not at every decoding step."""
    cfg = options(prune_targets="fc1|fc2", qat_bits=4, ddp_backend="legacy_ddp")
    task = TwoLayersPruningTask(cfg)
    trained = task.build_model(cfg)
    update_masks(trained, cfg, 0.5)
    inputs = torch.randn(3, 6)
    expected = trained.fc2(trained.fc1(inputs))
    for_inference = task.build_model(cfg, from_checkpoint=True)
    for_inference.load_state_dict(trained.state_dict())
    assert not any(parametrize.is_parametrized(m) for m in for_inference.modules())
    assert torch.equal(for_inference.fc2(for_inference.fc1(inputs)), expected)
    resumed = task.build_model(cfg)  # fairseq-train keeps training the masks
    resumed.load_state_dict(trained.state_dict())
    assert parametrize.is_parametrized(resumed.fc1, "weight") and parametrize.is_parametrized(resumed.fc2, "weight")


def test_generate_and_validate_run_a_pruned_checkpoint_without_parametrizations(pruned_mt):
    """Through fairseq's own loader, as fairseq-generate and fairseq-validate load: the same outputs."""
    from fairseq import checkpoint_utils

    save, _ = pruned_mt
    [model], cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(save / "checkpoint_last.pt")])
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    masked = task.build_model(cfg.model)  # as fairseq-train builds it
    masked.load_state_dict(pruned_state(save / "checkpoint_last.pt"), model_cfg=cfg.model)
    assert any(parametrize.is_parametrized(m) for m in masked.modules())
    tokens, lengths, prev = torch.tensor([[5, 6, 7, 8, 2]]), torch.tensor([5]), torch.tensor([[2, 5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.equal(model.eval()(tokens, lengths, prev)[0], masked.eval()(tokens, lengths, prev)[0])


def test_folded_masks_benchmark_runs_and_refuses_a_dense_checkpoint(pruned_mt, mt_data, mt_checkpoint):
    save, _ = pruned_mt
    bench = [sys.executable, "-m", "fairseq_compress.benchmarks.folded_masks", "--data", mt_data, "--sentences", "4",
             "--batch-size", "2", "--repeats", "1", "--ckpt"]
    assert "folded at load: " in run(bench + [save / "checkpoint_last.pt"]).stdout
    one_line_error(run(bench + [mt_checkpoint], check=False), "is not a checkpoint of a *_pruning task")
