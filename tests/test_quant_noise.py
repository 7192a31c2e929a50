"""Quant-Noise criterion: noise math, functional noise (weights never modified),
eval determinism, module selection, and fairseq-train end to end with two
inner criteria, plus bad input."""
import functools
import re

import pytest
import torch
from fairseq import options, tasks
from fairseq.criterions.cross_entropy import CrossEntropyCriterion
from fairseq.logging import metrics
from fairseq.modules.checkpoint_activations import checkpoint_wrapper

import fairseq_compress  # noqa: F401
from fairseq_compress.criterions.quant_noise import DEFAULT_EXCLUDE, QuantNoiseCriterion
from fairseq_compress.modules.quant_noise import noised_parameters, pq_noise, recompute_with_noise, scalar_noise
from fairseq_compress.modules.scalar_quantizer import fake_quantize

from conftest import USER_DIR, one_line_error, run, train_mt_command


def test_pq_noise_drops_whole_blocks_and_keeps_the_expectation():
    torch.manual_seed(0)
    weight = torch.randn(64, 32)
    noised, dropped = pq_noise(weight, 0.25, 8)
    blocks = noised.view(64, 4, 8)
    assert torch.equal(blocks[dropped], torch.zeros_like(blocks[dropped]))
    torch.testing.assert_close(blocks[~dropped], weight.view(64, 4, 8)[~dropped] / 0.75)
    total, rate = torch.zeros_like(weight), 0.0
    for _ in range(2000):
        noised, dropped = pq_noise(weight, 0.25, 8)
        total += noised
        rate += dropped.float().mean().item() / 2000
    assert abs(rate - 0.25) < 0.01
    torch.testing.assert_close(total / 2000, weight, atol=0.12, rtol=0)


def test_pq_noise_gradient_is_straight_through():
    """The weight's gradient is the loss's gradient at the noised weight, dropped blocks included."""
    torch.manual_seed(0)
    weight, x = torch.randn(16, 32, requires_grad=True), torch.randn(5, 32)
    noised, dropped = pq_noise(weight, 0.5, 8)
    (x @ noised.T).pow(2).sum().backward()
    at_noised = noised.detach().clone().requires_grad_()
    (x @ at_noised.T).pow(2).sum().backward()
    assert dropped.any()
    torch.testing.assert_close(weight.grad, at_noised.grad)
    dropped_weights = dropped.repeat_interleave(8, dim=1)
    assert weight.grad[dropped_weights].abs().sum() > 0


def test_learned_positional_embeddings_get_no_noise_by_default():
    model = torch.nn.ModuleDict({"embed_tokens": torch.nn.Embedding(10, 8), "embed_positions": torch.nn.Embedding(6, 8)})
    assert [name for name, _ in noised_parameters(model, re.compile(DEFAULT_EXCLUDE)).values()] == ["embed_tokens"]
    assert re.search(DEFAULT_EXCLUDE, "encoder.sentence_encoder.embed_positions")


def test_tied_output_projection_sees_the_exact_weight(mt_data):
    """With shared embeddings the embedding is noised, the output projection tied to it is not."""
    model, criterion, batch = build(mt_data, *QN, "--qn-pq", "0.5")
    model.train()
    embedding = model.encoder.embed_tokens.weight
    assert model.decoder.output_projection.weight is embedding
    seen = {}

    def record(name):
        def hook(module, args):
            seen[name] = module._parameters["weight"] is embedding
        return hook

    for name in ("encoder.embed_tokens", "decoder.embed_tokens", "decoder.output_projection"):
        model.get_submodule(name).register_forward_pre_hook(record(name))
    criterion(model, batch)
    assert seen == {"encoder.embed_tokens": False, "decoder.embed_tokens": False, "decoder.output_projection": True}


def test_fake_quantize_levels_and_error():
    """Symmetric per output row: at most 2^b - 1 levels a row, error at most half a row's step."""
    weight = torch.randn(50, 40)
    quantized = fake_quantize(weight, 4)
    assert all(row.unique().numel() <= 15 for row in quantized)
    step = weight.abs().amax(1, keepdim=True) / 7
    assert ((quantized - weight).abs() <= step / 2 + 1e-6).all()


@pytest.mark.parametrize("bits", [8, 4])
def test_fully_noised_weight_is_what_quantize_stores(bits):
    """Scalar noise at p = 1 (every weight chosen) equals the export of fairseq-compress quantize."""
    from fairseq_compress.compress.checkpoint_format import decode_entry, encode_int

    torch.manual_seed(0)
    weight = torch.randn(32, 24)
    noised, chosen = scalar_noise(weight, 1.0, bits)
    assert chosen.all()
    torch.testing.assert_close(noised, decode_entry(encode_int(weight, bits), {}), atol=0, rtol=0)


def test_scalar_noise_rate_values_and_straight_through_gradient():
    torch.manual_seed(0)
    weight = torch.randn(200, 100, requires_grad=True)
    noised, chosen = scalar_noise(weight, 0.3, 8)
    assert abs(chosen.float().mean().item() - 0.3) < 0.01
    torch.testing.assert_close(noised[chosen], fake_quantize(weight, 8)[chosen])
    assert torch.equal(noised[~chosen], weight[~chosen])
    noised.sum().backward()
    assert torch.equal(weight.grad, torch.ones_like(weight))


def build(data, *flags):
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [str(data), "--user-dir", str(USER_DIR), "--cpu", "--task", "translation",
                                                "--arch", "transformer_l2_h128", "--dropout", "0", *flags])
    task = tasks.setup_task(args)
    task.load_dataset("valid")
    batch = next(task.get_batch_iterator(task.dataset("valid"), max_tokens=512, seed=1).next_epoch_itr(shuffle=False))
    return task.build_model(args), task.build_criterion(args), batch


QN = ["--criterion", "quant_noise", "--qn-criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1"]


def test_noise_is_functional_and_absent_in_eval(mt_data):
    torch.manual_seed(0)
    model, criterion, batch = build(mt_data, *QN, "--qn-pq", "0.2", "--qn-scalar", "0.1")
    assert type(criterion).__name__ == "QuantNoiseLabelSmoothedCrossEntropyCriterion"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    losses = []
    for _ in range(5):
        loss, _, log = criterion(model, batch)
        loss.backward()
        losses.append(loss.item())
        assert 0.1 < log["qn_blocks_dropped"] / log["qn_blocks"] < 0.3
    assert len(set(losses)) > 1, "fresh noise every step"
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "noise leaked into the stored weights"
    fc1 = model.encoder.layers[0].fc1.weight
    assert fc1.grad is not None and fc1.grad.abs().sum() > 0

    model.eval()
    exact = criterion.inner(model, batch)[0]
    assert criterion(model, batch)[0].item() == criterion(model, batch)[0].item() == exact.item()
    model.train()
    assert criterion(model, batch)[0].item() != criterion.inner(model, batch)[0].item()


def test_every_linear_and_embedding_but_the_output_layer(mt_data):
    model, _, _ = build(mt_data, *QN)
    targets = noised_parameters(model, re.compile(DEFAULT_EXCLUDE))
    modules = {module for module, _ in targets.values()}
    assert "encoder.embed_tokens" in modules  # tied with the decoder's input and output embedding
    assert {"encoder.layers.0.self_attn.q_proj", "decoder.layers.1.encoder_attn.out_proj",
            "decoder.layers.0.fc2"} <= modules
    linears = sum(isinstance(m, torch.nn.Linear) for n, m in model.named_modules() if n != "decoder.output_projection")
    assert len(targets) == linears + 1
    assert not any("output_projection" in m for m in modules)


@pytest.mark.parametrize("inner,flags", [
    ("label_smoothed_cross_entropy", ["--label-smoothing", "0.1"]),
    ("cross_entropy", []),
])
def test_fairseq_train_translation(mt_data, tmp_path, inner, flags):
    result = run(train_mt_command(criterion=[]) + [
        mt_data, "--arch", "transformer_l2_h128", "--max-update", "4", "--save-dir", tmp_path,
        "--criterion", "quant_noise", "--qn-criterion", inner, *flags, "--qn-pq", "0.1", "--qn-scalar", "0.05",
        "--log-interval", "1", "--log-format", "simple"])
    line = [x for x in (result.stdout + result.stderr).splitlines() if "| train |" in x][-1]
    assert re.search(r"qn_pq 0\.\d+", line) and re.search(r"qn_scalar 0\.0\d+", line), line
    assert ("nll_loss" in line) == (inner == "label_smoothed_cross_entropy")
    assert (tmp_path / "checkpoint_last.pt").exists()


def test_fairseq_train_masked_lm(mlm_data, tmp_path):
    en_bin, _ = mlm_data
    result = run(["fairseq-train", en_bin, "--user-dir", USER_DIR, "--cpu", "--task", "masked_lm",
                  "--arch", "roberta_l2_h128", "--tokens-per-sample", "64", "--max-tokens", "1024",
                  "--criterion", "quant_noise", "--qn-criterion", "masked_lm", "--qn-pq", "0.1",
                  "--optimizer", "adam", "--lr", "0.0005", "--max-update", "3", "--save-dir", tmp_path,
                  "--num-workers", "0", "--no-epoch-checkpoints", "--log-format", "simple", "--log-interval", "1"])
    line = [x for x in (result.stdout + result.stderr).splitlines() if "| train |" in x][-1]
    assert "qn_pq" in line and "| loss " in line


@pytest.mark.parametrize("flags,fragment", [
    (["--qn-criterion", "nll", "--qn-pq", "0.1"], "--qn-criterion must be one of cross_entropy, label_smoothed_cross_entropy"),
    (["--qn-criterion", "cross_entropy", "--qn-pq", "1.0"], "--qn-pq must be in [0, 1), got 1.0"),
    (["--qn-criterion", "cross_entropy", "--qn-scalar", "-0.1"], "--qn-scalar must be in [0, 1)"),
    (["--qn-criterion", "cross_entropy", "--qn-pq", "0.1", "--qn-block-size", "24"],
     "--qn-block-size 24 must divide the input features of every noised layer; encoder.embed_tokens has 128"),
    (["--qn-criterion", "cross_entropy", "--qn-pq", "0.1", "--qn-exclude", "."], "nothing gets quantization noise"),
])
def test_bad_input(mt_data, tmp_path, flags, fragment):
    result = run(train_mt_command(criterion=[]) + [mt_data, "--arch", "transformer_l2_h128", "--max-update", "2", "--save-dir", tmp_path / "ckpt",
                         "--criterion", "quant_noise", *flags], check=False)
    one_line_error(result, fragment)
    assert not (tmp_path / "ckpt" / "checkpoint_last.pt").exists()


def final_parameters(save_dir):
    state = torch.load(save_dir / "checkpoint_last.pt", map_location="cpu", weights_only=True)
    return state["model"]


def test_noise_survives_activation_checkpointing(mt_data, tmp_path):
    """--checkpoint-activations reruns each layer's forward in backward: the rerun must
    see the same noised weights, or the update would be the un-noised model's."""
    # SGD: Adam would amplify the float rounding of a different summation order in
    # near-zero gradients past 1e-6; the missing noise changes 90 % of the weights either way.
    base = ["fairseq-train", "--user-dir", USER_DIR, "--cpu", "--seed", "1", "--optimizer", "sgd", "--lr", "0.05",
            "--no-progress-bar", "--num-workers", "0", "--no-epoch-checkpoints"]
    runs = {}
    for name, extra in (("plain", []), ("checkpointed", ["--checkpoint-activations"])):
        save_dir = tmp_path / name
        run(base + [mt_data, "--arch", "transformer_l2_h128", "--criterion", "quant_noise",
                    "--qn-criterion", "cross_entropy", "--qn-pq", "0.3", "--dropout", "0", "--max-update", "5",
                    "--max-tokens", "1024", "--save-dir", save_dir, "--no-save-optimizer-state", *extra])
        runs[name] = final_parameters(save_dir)
    assert runs["plain"].keys() == runs["checkpointed"].keys()
    for key, value in runs["plain"].items():
        torch.testing.assert_close(runs["checkpointed"][key], value, atol=1e-6, rtol=0,
                                   msg=lambda m, key=key: f"{key}: {m}")


def test_fairseq_checkpoint_wrapper_is_what_noise_on_reruns_unpacks():
    # The partial checkpoint_wrapper leaves on a layer is fairseq's private layout: this test is
    # the one that fails when a fairseq upgrade changes it.
    layer = checkpoint_wrapper(torch.nn.Linear(4, 4))
    assert recompute_with_noise(layer, {}, set()) and layer.recomputes_with_noise
    rerun = layer.forward.args[0]
    assert layer.forward.args[1:] == (False,) and rerun is not layer.precheckpoint_forward
    torch.testing.assert_close(layer(torch.ones(2, 4)), layer.precheckpoint_forward(torch.ones(2, 4)))


@pytest.mark.parametrize("changed, fragment", [
    (lambda forward, original: original, "not a functools.partial"),
    (lambda forward, original: functools.partial(print, *forward.args), "'print', not _checkpointed_forward"),
    (lambda forward, original: functools.partial(forward.func, original, False, None), "binds 3 positional"),
    (lambda forward, original: functools.partial(forward.func, original, offload_to_cpu=False), "binds 1 positional"),
    (lambda forward, original: functools.partial(forward.func, print, False), "not the layer's precheckpoint_forward"),
])
def test_a_changed_checkpoint_wrapper_fails_in_one_line(changed, fragment):
    layer = checkpoint_wrapper(torch.nn.Linear(4, 4))
    layer.forward = changed(layer.forward, layer.precheckpoint_forward)
    with pytest.raises(RuntimeError, match="^fairseq's checkpoint_wrapper changed") as error:
        recompute_with_noise(layer, {}, set())
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_noised_fractions_of_several_ranks_are_logged_as_numbers():
    # With several ranks, fairseq's stats sync hands every logging output back as a float64
    # tensor; the meters (saved in checkpoints, printed in logs) must hold plain numbers.
    criterion = type("QuantNoiseCrossEntropyCriterion", (QuantNoiseCriterion,), {"inner_class": CrossEntropyCriterion})
    synced = {key: torch.tensor(value, dtype=torch.float64) for key, value in
              {"loss": 6.0, "ntokens": 3, "nsentences": 1, "sample_size": 3,
               "qn_blocks": 40, "qn_blocks_dropped": 4, "qn_weights": 80, "qn_weights_quantized": 8}.items()}
    with metrics.aggregate(new_root=True) as agg:
        criterion.reduce_metrics([synced])
    for name in ("qn_pq", "qn_scalar"):
        assert agg[name].avg == 0.1 and not torch.is_tensor(agg[name].sum) and not torch.is_tensor(agg[name].count)
