"""Scheduled DropHead: mask statistics, schedule, equivalence with stock attention,
gradients, and end-to-end training / generation / resume / bad input."""
import copy
import math
import re

import pytest
import torch
from fairseq.modules import MultiheadAttention

import fairseq_compress  # noqa: F401
from fairseq_compress.errors import ConfigError
from fairseq_compress.modules.scheduled_drophead import (
    DropHeadMultiheadAttention,
    drophead_mask,
    DropHeadSchedule,
    drophead_schedule,
)

from conftest import TRAIN_MT, USER_DIR, WORDS, one_line_error, run, script, sentences

EMBED, HEADS, SRC, TGT, BATCH = 64, 4, 7, 5, 3


def test_mask_drop_rate_and_rescale():
    torch.manual_seed(0)
    mask = drophead_mask(50_000, 8, 0.3)
    dropped = (mask == 0).float().mean().item()
    assert abs(dropped - 0.3) < 0.005
    kept = (mask > 0).sum(dim=1, keepdim=True)
    torch.testing.assert_close(mask[mask > 0], (8 / kept.expand_as(mask))[mask > 0])
    torch.testing.assert_close(mask.sum(dim=1), torch.full((50_000,), 8.0))


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_effective_rate_is_p_minus_p_to_the_heads(heads):
    from types import SimpleNamespace

    from fairseq_compress.modules.scheduled_drophead import effective_rate

    torch.manual_seed(0)
    measured = (drophead_mask(200_000, heads, 0.3) == 0).float().mean().item()
    expected = effective_rate(0.3, [SimpleNamespace(num_heads=heads)])
    assert expected == pytest.approx(0.3 - 0.3 ** heads)
    assert measured == pytest.approx(expected, abs=0.003)


def test_example_with_all_heads_dropped_keeps_them_all():
    mask = drophead_mask(10, 4, 0.999999)
    assert torch.equal(mask, torch.ones(10, 4))


@pytest.mark.parametrize(
    "step,expected",
    [(0, 0.2), (50, 0.1), (100, 0.0), (550, 0.1), (1000, 0.2), (1200, 0.2)],
)
def test_v_schedule(step, expected):
    assert math.isclose(DropHeadSchedule(0.2, "v", 100, 1000).rate(step), expected, abs_tol=1e-12)


def test_constant_schedule_and_no_warmup():
    assert DropHeadSchedule(0.1, "constant", 100, 1000).rate(500) == 0.1
    assert DropHeadSchedule(0.2, "v", 0, 1000).rate(0) == 0.0
    assert math.isclose(DropHeadSchedule(0.2, "v", 0, 1000).rate(250), 0.05)


def attention_pair(self_attention=True, dropout=0.0):
    torch.manual_seed(0)
    stock = MultiheadAttention(EMBED, HEADS, dropout=dropout, self_attention=self_attention,
                               encoder_decoder_attention=not self_attention)
    drophead = copy.deepcopy(stock)
    drophead.__class__ = DropHeadMultiheadAttention
    return stock, drophead


def inputs(with_masks=True):
    torch.manual_seed(1)
    query = torch.randn(TGT, BATCH, EMBED)
    key = torch.randn(SRC, BATCH, EMBED)
    padding = torch.zeros(BATCH, SRC, dtype=torch.bool)
    padding[0, -2:] = True
    padding[2, -4:] = True
    causal = torch.triu(torch.full((TGT, SRC), float("-inf")), diagonal=SRC - TGT + 1)
    return query, key, (padding if with_masks else None), (causal if with_masks else None)


@pytest.mark.parametrize("mode", ["train_p0", "eval_p05"])
@pytest.mark.parametrize("need_weights", [False, True])
def test_equal_to_stock_attention_when_off(mode, need_weights):
    stock, drophead = attention_pair(self_attention=False)
    query, key, padding, causal = inputs()
    drophead.drophead_p = 0.0 if mode == "train_p0" else 0.5
    for module in (stock, drophead):
        module.train(mode == "train_p0")
    expected, expected_weights = stock(query, key, key, key_padding_mask=padding, attn_mask=causal, need_weights=need_weights)
    actual, actual_weights = drophead(query, key, key, key_padding_mask=padding, attn_mask=causal, need_weights=need_weights)
    torch.testing.assert_close(actual, expected)
    if need_weights:
        torch.testing.assert_close(actual_weights, expected_weights)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("weights", ["none", "mean", "per_head"])
def test_drophead_path_with_every_head_kept_equals_stock_in_training(weights, dtype):
    """The DropHead computation itself (not the delegation to stock attention):
    with every head kept it is fairseq's attention, weights included; in fp16 (--fp16) too,
    where fairseq returns the float32 probabilities as the weights."""
    stock, drophead = (module.to(dtype) for module in attention_pair(self_attention=False))
    query, key, padding, causal = (t if t is None or t.dtype == torch.bool else t.to(dtype) for t in inputs())
    tolerance = {} if dtype == torch.float32 else {"atol": 2e-3, "rtol": 2e-3}
    stock.train()
    drophead.train()
    # static_kv as fairseq's decoder calls encoder-decoder attention (stock's fused path
    # would average the weights even when asked per head)
    flags = {"need_weights": weights != "none", "need_head_weights": weights == "per_head", "static_kv": True}
    expected, expected_weights = stock(query, key, key, key_padding_mask=padding, attn_mask=causal, **flags)
    actual, actual_weights = drophead._drophead_forward(query, key, key, padding, weights != "none", causal,
                                                        weights == "per_head")
    torch.testing.assert_close(actual, expected, **tolerance)
    if weights == "none":
        assert actual_weights is None
    else:
        assert actual_weights.shape == expected_weights.shape
        torch.testing.assert_close(actual_weights, expected_weights, **tolerance)  # dtypes too


def test_drophead_acts_when_the_caller_asks_for_per_head_weights():
    """fairseq's decoder asks its alignment layer (the last) for per-head weights in training."""
    stock, drophead = attention_pair(self_attention=False)
    query, key, padding, causal = inputs()
    for module in (stock, drophead):
        module.train()
    drophead.drophead_p = 0.5
    expected, expected_weights = stock(query, key, key, key_padding_mask=padding, attn_mask=causal,
                                       need_head_weights=True, static_kv=True)
    torch.manual_seed(3)
    actual, actual_weights = drophead(query, key, key, key_padding_mask=padding, attn_mask=causal,
                                      need_head_weights=True, static_kv=True)
    assert not torch.allclose(actual, expected)
    torch.testing.assert_close(actual_weights, expected_weights)  # the probabilities, as fairseq returns them


ARCH_CASES = {  # arch: (task, dictionaries)
    "transformer_l2_h128": ("translation", ("dict.en.txt", "dict.fr.txt")),
    "roberta_l2_h128": ("masked_lm", ("dict.txt",)),
    "electra_tiny": ("masked_lm", ("dict.txt",)),
}


def build_model(arch, data, *extra):
    from fairseq import options, tasks
    from fairseq.data import Dictionary

    task_name, dictionaries = ARCH_CASES[arch]
    for name in dictionaries:
        d = Dictionary()
        for i in range(40):
            d.add_symbol(f"w{i}")
        d.save(str(data / name))
    parser = options.get_training_parser(default_task=task_name)
    task_args = ["-s", "en", "-t", "fr"] if task_name == "translation" else []
    args = options.parse_args_and_arch(parser, [str(data), "--task", task_name, "--arch", arch, "--user-dir",
                                                str(USER_DIR), "--dropout", "0", "--attention-dropout", "0",
                                                "--max-update", "10", *task_args, *extra])
    task = tasks.setup_task(args)
    return task.build_model(args), task_name


def forward_once(model, task_name):
    torch.manual_seed(0)
    tokens = torch.randint(4, 40, (16, 6))  # enough examples that some head is dropped in every module
    if task_name == "translation":
        model(tokens, torch.full((16,), 6), tokens)
    elif hasattr(model, "generator"):  # ELECTRA pretraining: generator, then discriminator
        model(tokens, generator_mask=tokens > 30, sample_replacements=lambda logits: logits.argmax(-1))
    else:
        model(tokens)


@pytest.mark.parametrize("arch", list(ARCH_CASES))
def test_every_attention_module_drops_heads_in_training(arch, tmp_path):
    """Each module's own training output, at p = 0.5, differs from stock attention on
    the same inputs; at p = 0 it equals it. Hooks capture each call's inputs, so a
    module's difference is its own, not one inherited from the layers before it."""
    # electra_tiny's generator would have 1 head (4 / 4), which DropHead never drops
    heads = ["--encoder-attention-heads", "8"] if arch == "electra_tiny" else []
    model, task_name = build_model(arch, tmp_path, "--drophead-p", "0.5", "--drophead-schedule", "constant", *heads)
    model.train()
    modules = dict((name, m) for name, m in model.named_modules() if isinstance(m, DropHeadMultiheadAttention))
    expected_count = {"transformer_l2_h128": 6, "roberta_l2_h128": 2, "electra_tiny": 4}[arch]
    assert len(modules) == expected_count  # ELECTRA: the discriminator's and the generator's layers
    for p in (0.5, 0.0):
        for m in modules.values():
            m.drophead_p = p
        differs = {}

        def compare(name):
            def hook(module, args, kwargs, output):
                with torch.no_grad():
                    stock, _ = MultiheadAttention.forward(module, *args, **kwargs)
                differs[name] = not torch.allclose(output[0], stock, atol=1e-6)
            return hook

        handles = [m.register_forward_hook(compare(name), with_kwargs=True) for name, m in modules.items()]
        forward_once(model, task_name)
        for handle in handles:
            handle.remove()
        assert set(differs) == set(modules)
        assert all(differs.values()) if p else not any(differs.values()), (p, differs)


def reference_drophead(module, query, key, padding, causal, heads):
    """Textbook attention per head, heads scaled by the mask, then W_O."""
    def split(x):
        return x.view(x.size(0), BATCH, HEADS, EMBED // HEADS).permute(1, 2, 0, 3)

    q, k, v = split(module.q_proj(query)), split(module.k_proj(key)), split(module.v_proj(key))
    scores = q @ k.transpose(-1, -2) / math.sqrt(EMBED // HEADS) + causal
    scores = scores.masked_fill(padding[:, None, None, :], float("-inf"))
    context = torch.softmax(scores, dim=-1) @ v * heads[:, :, None, None]
    return module.out_proj(context.permute(2, 0, 1, 3).reshape(TGT, BATCH, EMBED))


@pytest.mark.parametrize("need_weights", [False, True])
def test_drophead_matches_reference(need_weights):
    _, drophead = attention_pair(self_attention=False)
    drophead.train()
    drophead.drophead_p = 0.5
    query, key, padding, causal = inputs()
    torch.manual_seed(123)
    actual, _ = drophead(query, key, key, key_padding_mask=padding, attn_mask=causal, need_weights=need_weights)
    torch.manual_seed(123)  # the same draw: attention dropout is 0, so the mask is the only random step
    heads = drophead_mask(BATCH, HEADS, 0.5)
    assert (heads == 0).any(), "the draw should drop something for this test to mean anything"
    torch.testing.assert_close(actual, reference_drophead(drophead, query, key, padding, causal, heads))


def test_gradient_reaches_only_kept_heads():
    _, drophead = attention_pair()
    drophead.train()
    drophead.drophead_p = 0.5
    query = torch.randn(TGT, 1, EMBED)
    torch.manual_seed(7)
    output, _ = drophead(query, query, query, need_weights=False)
    torch.manual_seed(7)
    kept = drophead_mask(1, HEADS, 0.5)[0] > 0
    assert 0 < kept.sum() < HEADS
    output.sum().backward()
    head_dim = EMBED // HEADS
    for head in range(HEADS):
        rows = slice(head * head_dim, (head + 1) * head_dim)
        for proj in (drophead.q_proj, drophead.k_proj, drophead.v_proj):
            grad_norm = proj.weight.grad[rows].abs().sum().item()
            assert (grad_norm > 0) == bool(kept[head]), (head, proj)


def test_bad_flags_are_config_errors():
    from argparse import Namespace

    def schedule(**kwargs):
        return drophead_schedule(Namespace(**{"drophead_schedule": "v", "warmup_updates": 10, "max_update": 100, **kwargs}))

    with pytest.raises(ConfigError, match=r"--drophead-p must be in \[0, 1\), got 1.0"):
        schedule(drophead_p=1.0)
    with pytest.raises(ConfigError, match="--drophead-p"):
        schedule(drophead_p=-0.1)
    with pytest.raises(ConfigError, match="--max-update"):
        schedule(drophead_p=0.1, max_update=0)
    with pytest.raises(ConfigError, match="--drophead-warmup-updates"):
        schedule(drophead_p=0.1, drophead_warmup_updates=200)
    assert schedule(drophead_p=0.1).warmup_updates == 10  # defaults to the lr warmup


def drophead_values(log):
    """The drophead_p of each train_inner log line (the config dump names it too)."""
    return [float(v) for v in re.findall(r"\| train_inner \|.*drophead_p=([0-9.]+)", log)]


@pytest.fixture(scope="module")
def drophead_run(mt_data, tmp_path_factory):
    """transformer_l2_h128 with DropHead p=0.2, V schedule over 12 updates (W=4): (save dir, log)."""
    save_dir = tmp_path_factory.mktemp("drophead_mt")
    result = run(drophead_command(mt_data, save_dir))
    return save_dir, result.stdout + result.stderr


def drophead_command(mt_data, save_dir, max_update=12):
    return TRAIN_MT + [mt_data, "--arch", "transformer_l2_h128", "--drophead-p", "0.2", "--warmup-updates", "4",
                       "--max-update", max_update, "--log-interval", "1", "--max-tokens", "1024", "--save-dir", save_dir]


def test_drophead_p_is_logged_on_schedule(drophead_run):
    _, log = drophead_run
    logged = drophead_values(log)
    # The rate used in update u (1-based) is p(u - 1).
    expected = [round(DropHeadSchedule(0.2, "v", 4, 12).rate(u - 1), 4) for u in range(1, 13)]
    assert logged[:12] == pytest.approx(expected)
    effective = [float(v) for v in re.findall(r"\| train_inner \|.*drophead_p_effective=([0-9.]+)", log)]
    assert effective[:12] == pytest.approx([round(p - p ** 2, 4) for p in expected])  # 2 heads per module


def test_schedule_survives_resume(mt_data, drophead_run, tmp_path):
    _, log = drophead_run
    run(drophead_command(mt_data, tmp_path, max_update=7))  # stop at update 7 ...
    result = run(drophead_command(mt_data, tmp_path))  # ... then rerun the full command: it resumes from update 7
    assert "Loaded checkpoint" in result.stdout + result.stderr
    assert drophead_values(result.stdout + result.stderr)[:5] == drophead_values(log)[7:12]


def test_generate_with_beam_search_after_drophead_training(mt_data, drophead_run):
    save_dir, _ = drophead_run
    result = run(["fairseq-generate", mt_data, "--user-dir", USER_DIR, "--path", save_dir / "checkpoint_last.pt",
                  "--beam", "4", "--max-sentences", "50", "--max-len-b", "20"])
    assert result.stdout.count("\nH-") == 200


def test_roberta_trains_with_drophead(tmp_path):

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "train.txt").write_text("\n".join(sentences(300, WORDS)) + "\n")
    (raw / "valid.txt").write_text("\n".join(sentences(80, WORDS, offset=3)) + "\n")  # >= 8 blocks
    run(script("prepare_mlm.sh") + [raw, tmp_path / "bin", "--vocab-size", "30"])
    result = run(["fairseq-train", tmp_path / "bin", "--user-dir", USER_DIR, "--cpu", "--task", "masked_lm",
                  "--criterion", "masked_lm", "--arch", "roberta_l2_h128", "--tokens-per-sample", "64",
                  "--drophead-p", "0.2", "--drophead-schedule", "constant", "--optimizer", "adam", "--lr", "0.0005",
                  "--max-tokens", "2048", "--max-update", "3", "--log-interval", "1", "--no-progress-bar",
                  "--num-workers", "0", "--save-dir", tmp_path / "ckpt"])
    assert drophead_values(result.stdout + result.stderr)[:3] == [0.2, 0.2, 0.2]


def test_bad_drophead_flag_is_one_line_before_training(mt_data, tmp_path):
    result = run(TRAIN_MT + [mt_data, "--arch", "transformer_l2_h128", "--drophead-p", "1.5",
                             "--max-update", "5", "--save-dir", tmp_path / "ckpt"], check=False)
    assert one_line_error(result) == "error: --drophead-p must be in [0, 1), got 1.5"
    assert not (tmp_path / "ckpt" / "checkpoint_last.pt").exists()


def test_models_drophead_cannot_act_on_are_refused():
    """--drophead-p > 0 on a model with no fairseq attention module, or with add_bias_kv / add_zero_attn
    (which the DropHead path does not implement): a one-line ConfigError; at p = 0 nothing is refused."""
    from torch import nn

    from fairseq_compress.modules.scheduled_drophead import use_drophead_attention

    def model_with(*modules, p=0.1):
        model = nn.ModuleList(modules)
        model.drophead_schedule = DropHeadSchedule(p, "constant", 0, 10)
        return model

    with pytest.raises(ConfigError, match="--drophead-p 0.1: ModuleList has no fairseq MultiheadAttention module"):
        use_drophead_attention(model_with(nn.Linear(4, 4)))
    for flag in ("add_bias_kv", "add_zero_attn"):
        attention = MultiheadAttention(EMBED, HEADS, self_attention=True, **{flag: True})
        with pytest.raises(ConfigError, match="does not support attention with add_bias_kv / add_zero_attn"):
            use_drophead_attention(model_with(attention))
        assert type(attention) is MultiheadAttention  # refused before any module was converted
        assert use_drophead_attention(model_with(attention, p=0.0)) == [attention]
    plain = MultiheadAttention(EMBED, HEADS, self_attention=True)
    assert use_drophead_attention(model_with(plain)) == [plain] and type(plain) is DropHeadMultiheadAttention
