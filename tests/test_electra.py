"""ELECTRA: model shape and sharing, the criterion's math against a hand-computed
reference, pretraining -> sentence_prediction fine-tuning -> fairseq-validate
end to end, and bad input."""
import math
import re

import pytest
import torch
import torch.nn.functional as F
from fairseq import checkpoint_utils, options, tasks

import fairseq_compress  # noqa: F401
from fairseq_compress.criterions import electra as electra_criterion
from fairseq_compress.criterions.electra import gumbel_sample
from fairseq_compress.errors import ConfigError
from fairseq_compress.models.electra import ElectraModel, replace_masked

from conftest import ELECTRA_PRETRAIN, ELECTRA_TOKENS_PER_SAMPLE, TRAIN_MLM, USER_DIR, one_line_error, run


def build(en_bin, *extra):
    """Task, ELECTRA model and criterion as fairseq-train builds them."""
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, [str(en_bin), "--user-dir", str(USER_DIR), "--cpu",
                                                *map(str, ELECTRA_PRETRAIN), "--dropout", "0",
                                                "--attention-dropout", "0", *extra])
    task = tasks.setup_task(args)
    return task, task.build_model(args), task.build_criterion(args)


def first_batch(task, split="valid"):
    task.load_dataset(split)
    iterator = task.get_batch_iterator(task.dataset(split), max_tokens=1024, seed=1)
    return next(iterator.next_epoch_itr(shuffle=False))


@pytest.fixture(scope="module")
def electra(mlm_data):
    en_bin, _ = mlm_data
    torch.manual_seed(0)
    task, model, criterion = build(en_bin)
    return task, model, criterion, first_batch(task)


def test_tiny_shape_and_generator_at_a_quarter(electra):
    _, model, _, _ = electra
    assert isinstance(model, ElectraModel)
    disc, gen = model.encoder.sentence_encoder, model.generator.encoder
    assert disc.embed_tokens.embedding_dim == 64 and disc.embed_projection.out_features == 128
    assert len(disc.layers) == len(gen.layers) == 2
    assert disc.layers[0].self_attn.num_heads == 4 and gen.layers[0].self_attn.num_heads == 1
    assert gen.layers[0].embed_dim == 32 and gen.layers[0].fc1.out_features == 128
    assert model.generator.lm_head.dense.out_features == 64  # back to the embedding size


def shared_tensors(model):
    disc, gen = model.encoder.sentence_encoder, model.generator
    return [
        (disc.embed_tokens.weight, gen.encoder.embed_tokens.weight),
        (disc.embed_tokens.weight, gen.lm_head.weight),
        (disc.embed_positions.weight, gen.encoder.embed_positions.weight),
        (disc.layernorm_embedding.weight, gen.encoder.layernorm_embedding.weight),
    ]


def test_embeddings_are_one_tensor(electra):
    _, model, _, _ = electra
    for a, b in shared_tensors(model):
        assert a.data_ptr() == b.data_ptr()
    assert model.generator.encoder.layers[0].fc1.weight.data_ptr() != \
        model.encoder.sentence_encoder.layers[0].fc1.weight.data_ptr()


@pytest.mark.parametrize("arch,width,heads,ffn", [
    ("electra_small", 64, 1, 256), ("electra_base", 256, 4, 1024), ("electra_large", 256, 4, 1024)])
def test_generator_sizes_of_the_paper(arch, width, heads, ffn):
    """Clark et al. 2020 / Google's code: Small and Large generators at 1/4, Base at 1/3."""
    from argparse import Namespace

    from fairseq.models import ARCH_CONFIG_REGISTRY

    from fairseq_compress.models.electra import generator_args

    args = Namespace()
    ARCH_CONFIG_REGISTRY[arch](args)
    generator = generator_args(args)
    assert (generator.encoder_embed_dim, generator.encoder_attention_heads, generator.encoder_ffn_embed_dim) == \
        (width, heads, ffn)


def test_labels_replaced_only_where_the_sample_differs(tmp_path, monkeypatch):
    """The criterion's own labels, on a model built in process (a dictionary, no corpus): a masked
    position whose sample is the original token is not replaced."""
    from fairseq.data import Dictionary

    dictionary = Dictionary()
    for i in range(20):
        dictionary.add_symbol(f"w{i}")
    dictionary.save(str(tmp_path / "dict.txt"))
    task, model, criterion = build(tmp_path)
    mask, pad, eos = task.mask_idx, dictionary.pad(), dictionary.eos()
    masked_input = torch.tensor([[0, 4, mask, mask, 9, mask, eos, pad]])
    target = torch.tensor([[pad, pad, 5, 6, pad, 8, pad, pad]])  # the originals at the masked positions
    monkeypatch.setattr(electra_criterion, "gumbel_sample", lambda logits, t: torch.tensor([5, 7, 8]))
    assert replace_masked(masked_input, target.ne(pad), torch.tensor([5, 7, 8])).tolist() == [[0, 4, 5, 7, 9, 8, eos, pad]]
    parts = criterion.losses(model, {"net_input": {"src_tokens": masked_input}, "target": target})
    # over the 7 non-pad tokens: only the second masked one was sampled differently from its original
    assert parts["labels"].tolist() == [False, False, False, True, False, False, False]
    _, _, log = criterion(model, {"net_input": {"src_tokens": masked_input}, "target": target, "ntokens": 7,
                                  "nsentences": 1})
    assert log["n_replaced"] == 1 and log["n_masked"] == 3 and log["n_tokens"] == 7


def test_gumbel_sample_follows_the_softmax():
    torch.manual_seed(0)
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]])).expand(40_000, 3)
    counts = torch.bincount(gumbel_sample(logits, 1.0), minlength=3).float() / 40_000
    torch.testing.assert_close(counts, torch.tensor([0.7, 0.2, 0.1]), atol=0.01, rtol=0)
    sharp = torch.bincount(gumbel_sample(logits, 0.05), minlength=3).float() / 40_000
    assert sharp[0] > 0.99


def test_loss_against_hand_computed_reference(electra, monkeypatch):
    task, model, criterion, sample = electra
    model.train()
    src, target = sample["net_input"]["src_tokens"], sample["target"]
    pad = task.source_dictionary.pad()
    masked = target.ne(pad)
    assert masked.sum() > 4 and src.eq(pad).any(), "the batch should have masks and padding"
    # Samples: the original token at even masked positions, token 10 elsewhere.
    original_masked = target[masked]
    chosen = torch.where(torch.arange(len(original_masked)) % 2 == 0, original_masked, torch.full_like(original_masked, 10))
    monkeypatch.setattr(electra_criterion, "gumbel_sample", lambda logits, t: chosen)

    loss, sample_size, log = criterion(model, sample)

    with torch.no_grad():
        original = torch.where(masked, target, src)
        corrupted = src.clone()
        corrupted[masked] = chosen
        labels = (corrupted != original).float()
        gen_logits = model.generator(src, masked)
        disc_logits = model(corrupted)[0]
    gen_mean = F.cross_entropy(gen_logits, original_masked)
    not_pad = src.ne(pad)
    bce = F.binary_cross_entropy_with_logits(disc_logits, labels, reduction="none")
    disc_mean = bce[not_pad].mean()
    torch.testing.assert_close(loss, gen_mean + 50 * disc_mean, rtol=1e-5, atol=1e-5)
    assert sample_size == 1
    assert log["n_replaced"] == int(((chosen != original_masked)).sum()) == int(labels.sum())
    assert log["n_tokens"] == int(not_pad.sum()) < src.numel()
    assert math.isclose(log["disc_loss"].item(), bce[not_pad].sum().item(), rel_tol=1e-5)


def test_no_gradient_from_the_discriminator_reaches_the_generator(electra):
    _, model, criterion, sample = electra
    model.train()
    parts = criterion.losses(model, sample)
    generator_only = [p for n, p in model.generator.named_parameters()
                      if not any(p is s for s in model.encoder.sentence_encoder.parameters())]
    assert generator_only
    grads = torch.autograd.grad(parts["disc_loss"], generator_only, allow_unused=True, retain_graph=True)
    assert all(g is None or torch.count_nonzero(g) == 0 for g in grads)
    shared = model.encoder.sentence_encoder.embed_tokens.weight
    (disc_grad,) = torch.autograd.grad(parts["disc_loss"], [shared], retain_graph=True)
    assert torch.count_nonzero(disc_grad) > 0, "the shared embedding learns from the discriminator"
    gen_grads = torch.autograd.grad(parts["gen_loss"], generator_only, allow_unused=True)
    assert any(g is not None and torch.count_nonzero(g) > 0 for g in gen_grads)


def test_trains_under_pytorch_ddp_with_find_unused_parameters(electra, tmp_path):
    """fairseq's --ddp-backend pytorch_ddp --find-unused-parameters wraps the model in
    torch's DDP (behind ModuleProxyWrapper): generator and discriminator must run in
    the one wrapped forward, or DDP marks the generator unused and then sees its
    gradients ("Expected to mark a variable ready only once")."""
    from fairseq.distributed import ModuleProxyWrapper
    from torch.nn.parallel import DistributedDataParallel

    _, model, criterion, sample = electra
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0,
                                         world_size=1)
    try:
        wrapped = ModuleProxyWrapper(DistributedDataParallel(model, find_unused_parameters=True))
        wrapped.train()
        for _ in range(2):  # the error shows in the second backward's bookkeeping at the latest
            wrapped.zero_grad()
            loss, _, log = criterion(wrapped, sample)
            loss.backward()
        assert torch.isfinite(loss)
        assert model.generator.lm_head.dense.weight.grad.abs().sum() > 0
    finally:
        torch.distributed.destroy_process_group()


def test_random_token_prob_warns(mlm_data, caplog):
    en_bin, _ = mlm_data
    with caplog.at_level("WARNING"):
        build(en_bin, "--random-token-prob", "0.1")
    assert sum("ELECTRA expects 0" in r.message for r in caplog.records) == 1


@pytest.mark.parametrize("flags,fragment", [
    (["--disc-weight", "-1"], "--disc-weight must be >= 0"),
    (["--generator-size-divisor", "3"], "--generator-size-divisor 3 must divide --encoder-embed-dim (128)"),
    (["--gen-temperature", "0"], "--gen-temperature must be > 0"),
])
def test_bad_flags_raise_config_errors(mlm_data, flags, fragment):
    en_bin, _ = mlm_data
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        build(en_bin, *flags)


def test_cli_rejects_non_electra_arch_and_bad_weight(mlm_data, tmp_path):
    en_bin, _ = mlm_data
    args = ["fairseq-train", en_bin, *ELECTRA_PRETRAIN, "--max-update", "1", "--save-dir", tmp_path / "x", *TRAIN_MLM]
    one_line_error(run(args + ["--arch", "roberta_l2_h128"], check=False),
                   "--criterion electra needs an ELECTRA model (--arch electra_tiny|electra_small")
    one_line_error(run(args + ["--disc-weight", "-0.5"], check=False), "--disc-weight must be >= 0")
    one_line_error(run(args + ["--generator-size-divisor", "5"], check=False), "--generator-size-divisor 5")
    assert not (tmp_path / "x" / "checkpoint_last.pt").exists()


@pytest.fixture(scope="module")
def pretrained(mlm_data, tmp_path_factory):
    en_bin, _ = mlm_data
    save = tmp_path_factory.mktemp("electra")
    log = run(["fairseq-train", en_bin, *ELECTRA_PRETRAIN, "--max-update", "6", "--drophead-p", "0.2",
               "--warmup-updates", "2", "--lr-scheduler", "inverse_sqrt", "--save-dir", save, *TRAIN_MLM])
    return save / "checkpoint_last.pt", log.stdout + log.stderr


def test_pretraining_logs_what_an_electra_user_watches(pretrained):
    _, output = pretrained
    train_line = [line for line in output.splitlines() if "| train |" in line][-1]
    for name in ("gen_loss", "gen_ppl", "disc_loss", "disc_acc", "disc_acc_replaced", "replaced_frac", "drophead_p"):
        assert f"{name} " in train_line, train_line


def test_sharing_survives_a_checkpoint_round_trip(pretrained):
    checkpoint, _ = pretrained
    (model,), _ = checkpoint_utils.load_model_ensemble([str(checkpoint)])
    for a, b in shared_tensors(model):
        assert a.data_ptr() == b.data_ptr()
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]
    assert torch.equal(state["encoder.sentence_encoder.embed_tokens.weight"], model.generator.lm_head.weight)


def classify_flags(cls_bin):
    n_classes = len((cls_bin / "label/dict.txt").read_text().splitlines())
    return ["--task", "sentence_prediction", "--criterion", "sentence_prediction", "--num-classes", n_classes,
            "--max-positions", ELECTRA_TOKENS_PER_SAMPLE, "--shorten-method", "truncate"]


@pytest.fixture(scope="module")
def finetuned(pretrained, mlm_data, tmp_path_factory):
    """The fine-tuned discriminator's save dir (cls, 6 updates)."""
    checkpoint, _ = pretrained
    _, cls_bin = mlm_data
    save = tmp_path_factory.mktemp("electra_ft")
    run(["fairseq-train", cls_bin, *classify_flags(cls_bin), "--arch", "electra_tiny", "--init-token", "0",
         "--separator-token", "2", "--restore-file", checkpoint, "--reset-optimizer", "--reset-dataloader",
         "--reset-meters", "--batch-size", "16", "--max-update", "6", "--best-checkpoint-metric", "accuracy",
         "--maximize-best-checkpoint-metric", "--save-dir", save, *TRAIN_MLM])
    return save


def test_finetune_drops_the_generator_and_validates(pretrained, finetuned, mlm_data):
    checkpoint, _ = pretrained
    _, cls_bin = mlm_data
    save, classify = finetuned, classify_flags(cls_bin)
    finetuned = torch.load(save / "checkpoint_best.pt", map_location="cpu", weights_only=False)["model"]
    assert not any(k.startswith("encoder.generator.") for k in finetuned)
    pretrained_state = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]
    assert any(k.startswith("encoder.generator.") for k in pretrained_state)
    assert any(k.startswith("classification_heads.sentence_classification_head.") for k in finetuned)
    log = run(["fairseq-validate", cls_bin, "--user-dir", USER_DIR, "--path", save / "checkpoint_best.pt",
               *classify, "--valid-subset", "valid,test", "--batch-size", "64"])
    output = log.stdout + log.stderr
    assert "valid on 'test' subset" in output and "accuracy" in output


def test_the_finetuned_discriminator_shrinks_and_validates(pretrained, finetuned, mlm_data, tmp_path):
    _, cls_bin = mlm_data
    checkpoint = finetuned / "checkpoint_best.pt"
    tokens = torch.randint(4, 100, (2, 16))

    def classify(path):
        (model,), _ = checkpoint_utils.load_model_ensemble([str(path)])
        with torch.no_grad():
            return model.eval()(tokens, features_only=True, classification_head_name="sentence_classification_head")[0]

    shrink = ["fairseq-compress", "shrink", "--path", checkpoint, "--out"]
    run(shrink + [tmp_path / "same.pt"])
    torch.testing.assert_close(classify(tmp_path / "same.pt"), classify(checkpoint))
    run(shrink + [tmp_path / "small.pt", "--heads-keep", "0.5", "--ffn-keep", "0.5", "--layers-keep", "1"])
    (model,), _ = checkpoint_utils.load_model_ensemble([str(tmp_path / "small.pt")])
    layers = model.encoder.sentence_encoder.layers
    assert len(layers) == 1 and layers[0].self_attn.num_heads == 2 and layers[0].fc1.out_features == 256
    log = run(["fairseq-validate", cls_bin, "--user-dir", USER_DIR, "--path", tmp_path / "small.pt",
               *classify_flags(cls_bin), "--valid-subset", "test", "--batch-size", "64"])
    assert "valid on 'test' subset" in log.stdout + log.stderr
    refused = run(["fairseq-compress", "shrink", "--path", pretrained[0], "--out", tmp_path / "gen.pt"], check=False)
    one_line_error(refused, "an ELECTRA pretraining checkpoint", "shrink the fine-tuned discriminator")
