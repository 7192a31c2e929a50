"""fairseq-compress export --format transformers: RoBERTa (masked LM, sentence classification) and
ELECTRA (discriminator, generator, classifier) load with transformers alone and give fairseq's
logits at fp32 tolerance on the same padded batch; the tokenizer gives fairseq's ids."""
import json
import subprocess
import sys

import pytest
import sentencepiece
import torch
from fairseq.data.data_utils import collate_tokens

from conftest import ELECTRA_PRETRAIN, TRAIN_MLM, one_line_error, run

# An optional runtime (the export extra), skipped where it is missing, as ctranslate2 is.
transformers = pytest.importorskip("transformers")

TOLERANCE = dict(rtol=1e-4, atol=1e-4)
TOKENS_PER_SAMPLE = 64


def train(data, save, *flags):
    run(["fairseq-train", data, "--max-update", "2", "--save-dir", save, *TRAIN_MLM, *flags])
    return save / "checkpoint_last.pt"


def classify(cls_bin, pretrained, arch, *flags):
    n_classes = len((cls_bin / "label/dict.txt").read_text().splitlines())
    return ["--task", "sentence_prediction", "--criterion", "sentence_prediction", "--num-classes", n_classes,
            "--arch", arch, "--max-positions", TOKENS_PER_SAMPLE, "--shorten-method", "truncate", "--init-token", "0",
            "--separator-token", "2", "--restore-file", pretrained, "--reset-optimizer", "--reset-dataloader",
            "--reset-meters", "--batch-size", "16", *flags]


@pytest.fixture(scope="module")
def checkpoints(mlm_data, tmp_path_factory):
    """{name: (checkpoint, data-bin)} of 2-update trainings: the outputs must be equal whatever the weights."""
    en_bin, cls_bin = mlm_data
    work = tmp_path_factory.mktemp("hf")
    roberta = train(en_bin, work / "roberta", "--task", "masked_lm", "--criterion", "masked_lm",
                    "--arch", "roberta_l2_h128", "--tokens-per-sample", TOKENS_PER_SAMPLE, "--max-tokens", "1024")
    electra = train(en_bin, work / "electra", *ELECTRA_PRETRAIN)
    stock = train(en_bin, work / "stock_roberta", "--task", "masked_lm", "--criterion", "masked_lm", "--arch", "roberta",
                  "--encoder-layers", "1", "--encoder-embed-dim", "64", "--encoder-ffn-embed-dim", "128",
                  "--encoder-attention-heads", "4", "--tokens-per-sample", TOKENS_PER_SAMPLE, "--max-tokens", "1024")
    return {"roberta": (roberta, en_bin), "electra": (electra, en_bin), "stock_roberta": (stock, en_bin),
            "roberta_cls": (train(cls_bin, work / "roberta_cls", *classify(cls_bin, roberta, "roberta_l2_h128")), cls_bin),
            "electra_cls": (train(cls_bin, work / "electra_cls", *classify(
                cls_bin, electra, "electra_tiny", "--pooler-activation-fn", "gelu")), cls_bin),
            "electra_cls_tanh": (train(cls_bin, work / "electra_cls_tanh", *classify(cls_bin, electra, "electra_tiny")),
                                 cls_bin)}


def export(checkpoint, out, *flags):
    result = run(["fairseq-compress", "export", "--format", "transformers", "--path", checkpoint, "--out", out, *flags])
    return json.loads(result.stdout.splitlines()[-1])


def english(data, n=6):
    """n lines of the fixture's English text (its raw files sit next to the data-bin)."""
    return (data.parent / "en" / "valid.txt").read_text().splitlines()[:n]


def fairseq_batch(data, dictionary, sentences):
    """<s> pieces </s>, right-padded, as sentence_prediction feeds them (truncated to the test length)."""
    spm = sentencepiece.SentencePieceProcessor(model_file=str(data / "spm.model"))
    lines = [dictionary.encode_line(" ".join(spm.encode(s, out_type=str)), add_if_not_exist=False)[:TOKENS_PER_SAMPLE - 1]
             for s in sentences]
    return collate_tokens([torch.cat([torch.tensor([dictionary.bos()]), line]) for line in lines], dictionary.pad())


def fairseq_model(checkpoint, data):
    from fairseq_compress.model_loading import load_model

    model, task, _ = load_model(checkpoint, data)
    return model, task.source_dictionary


def hf_logits(hf_model, tokens, dictionary):
    with torch.no_grad():
        return hf_model(input_ids=tokens, attention_mask=tokens.ne(dictionary.pad()).long()).logits


def test_roberta_masked_lm_loads_offline_with_transformers_alone(checkpoints, tmp_path):
    checkpoint, data = checkpoints["roberta"]
    report = export(checkpoint, tmp_path / "hf")
    assert report["class"] == "RobertaForMaskedLM" and report["max_abs_difference_to_fairseq"] < 1e-4
    model, dictionary = fairseq_model(checkpoint, data)
    tokens = fairseq_batch(data, dictionary, english(data))
    assert tokens.eq(dictionary.pad()).any(), "the batch should hold padding"
    torch.save(tokens, tmp_path / "tokens.pt")
    # A fresh interpreter without fairseq or the plugin, offline.
    program = ("import sys, torch, transformers; assert 'fairseq' not in sys.modules; "
               "m = transformers.AutoModelForMaskedLM.from_pretrained(sys.argv[1]).eval(); t = torch.load(sys.argv[2]); "
               "torch.save(m(input_ids=t, attention_mask=t.ne(1).long()).logits.detach(), sys.argv[3])")
    subprocess.run([sys.executable, "-c", program, tmp_path / "hf", tmp_path / "tokens.pt", tmp_path / "logits.pt"],
                   check=True, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    actual = torch.load(tmp_path / "logits.pt")
    with torch.no_grad():
        expected = model(tokens)[0]
    keep = tokens.ne(dictionary.pad())
    torch.testing.assert_close(actual[keep], expected[keep], **TOLERANCE)


@pytest.mark.parametrize("name, auto_class, part", [
    ("stock_roberta", "AutoModelForMaskedLM", None),
    ("roberta_cls", "AutoModelForSequenceClassification", None),
    ("electra", "AutoModelForPreTraining", None),
    ("electra", "AutoModelForMaskedLM", "generator"),
    ("electra_cls", "AutoModelForSequenceClassification", None),
], ids=["stock-roberta", "roberta-classifier", "electra-discriminator", "electra-generator", "electra-classifier"])
def test_logits_equal_fairseq(checkpoints, tmp_path, name, auto_class, part):
    checkpoint, data = checkpoints[name]
    export(checkpoint, tmp_path / "hf", *(["--part", part] if part else []))
    hf_model = getattr(transformers, auto_class).from_pretrained(tmp_path / "hf").eval()
    model, dictionary = fairseq_model(checkpoint, data)
    tokens = fairseq_batch(data, dictionary, english(checkpoints["roberta"][1]))
    keep = tokens.ne(dictionary.pad())
    actual = hf_logits(hf_model, tokens, dictionary)
    with torch.no_grad():
        if name.endswith("_cls"):
            expected = model(tokens, features_only=True, classification_head_name="sentence_classification_head")[0]
        elif part == "generator":
            expected = model.generator(tokens, keep)
            actual = actual[keep]
        else:
            expected = model(tokens)[0][keep]
            actual = actual[keep]
    torch.testing.assert_close(actual, expected, **TOLERANCE)


def test_tokenizer_gives_fairseq_ids(checkpoints, tmp_path):
    checkpoint, data = checkpoints["roberta_cls"]
    export(checkpoint, tmp_path / "hf")
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    _, dictionary = fairseq_model(checkpoint, data)
    sentences = english(checkpoints["roberta"][1], 200)
    spm = sentencepiece.SentencePieceProcessor(model_file=str(data / "spm.model"))
    ids = lambda s: dictionary.encode_line(" ".join(spm.encode(s, out_type=str)), add_if_not_exist=False).tolist()
    for sentence in sentences:
        assert tokenizer(sentence)["input_ids"] == [dictionary.bos()] + ids(sentence), sentence
    a, b = sentences[:2]
    assert tokenizer(a, b)["input_ids"] == [0] + ids(a) + [2] + ids(b)  # <s> A </s> </s> B </s>
    assert tokenizer.pad_token_id == dictionary.pad() and tokenizer.mask_token_id == dictionary.index("<mask>")


def test_shrunk_ffn_exports_and_narrowed_heads_are_refused(checkpoints, tmp_path):
    checkpoint, data = checkpoints["roberta"]
    run(["fairseq-compress", "shrink", "--path", checkpoint, "--out", tmp_path / "ffn.pt", "--ffn-keep", "0.5",
         "--layers-keep", "1"])
    export(tmp_path / "ffn.pt", tmp_path / "hf")
    hf_model = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path / "hf").eval()
    assert hf_model.config.num_hidden_layers == 1 and hf_model.config.intermediate_size == 256
    model, dictionary = fairseq_model(tmp_path / "ffn.pt", data)
    tokens = fairseq_batch(data, dictionary, english(data))
    keep = tokens.ne(dictionary.pad())
    with torch.no_grad():
        torch.testing.assert_close(hf_logits(hf_model, tokens, dictionary)[keep], model(tokens)[0][keep], **TOLERANCE)
    run(["fairseq-compress", "shrink", "--path", checkpoint, "--out", tmp_path / "heads.pt", "--heads-keep", "0.5"])
    one_line_error(run(["fairseq-compress", "export", "--format", "transformers", "--path", tmp_path / "heads.pt",
                        "--out", tmp_path / "hf2"], check=False), "--format transformers", "heads")
    assert not (tmp_path / "hf2").exists()


def test_bad_input(checkpoints, word_mt, tmp_path):
    base = ["fairseq-compress", "export", "--format", "transformers", "--out", tmp_path / "x", "--path"]
    one_line_error(run(base + [word_mt[1]], check=False), "--format transformers", "RoBERTa and ELECTRA")
    one_line_error(run(base + [checkpoints["electra_cls"][0], "--part", "generator"], check=False),
                   "--part generator", "fine-tuned")
    one_line_error(run(base + [checkpoints["roberta"][0], "--part", "generator"], check=False), "--part", "ELECTRA")
    one_line_error(run(base + [checkpoints["electra_cls_tanh"][0]], check=False), "--pooler-activation-fn tanh", "gelu")
    one_line_error(run(base + [checkpoints["electra"][0], "--part", "both"], check=False), "--part both", "generator")
    one_line_error(run(base + [checkpoints["roberta"][0], "--quantization", "int8"], check=False),
                   "--quantization", "ctranslate2")
    one_line_error(run(["fairseq-compress", "export", "--format", "ctranslate2", "--path", checkpoints["roberta"][0],
                        "--data", checkpoints["roberta"][1], "--out", tmp_path / "x"], check=False),
                   "--format ctranslate2", "translation")
    assert not (tmp_path / "x").exists()


def tiny_roberta(**args):
    """A stock fairseq RobertaModel built in process (no corpus): (model, task, cfg) as load_model returns them."""
    from argparse import Namespace
    from types import SimpleNamespace

    from fairseq.data import Dictionary
    from fairseq.models.roberta import RobertaModel

    dictionary = Dictionary()
    for word in ("the", "a", "cat", "dog", "<mask>"):
        dictionary.add_symbol(word)
    args = Namespace(encoder_layers=1, encoder_embed_dim=16, encoder_ffn_embed_dim=32, encoder_attention_heads=2,
                     max_positions=16, dropout=0.0, attention_dropout=0.0, **args)
    task = SimpleNamespace(source_dictionary=dictionary)
    torch.manual_seed(0)
    model = RobertaModel.build_model(args, task).eval()
    return model, task, SimpleNamespace(model=args, task=SimpleNamespace(data="unused"))


def test_pre_norm_and_several_classification_heads_are_refused():
    from fairseq_compress.deploy.to_transformers import max_difference, roberta
    from fairseq_compress.errors import ConfigError

    model, task, cfg = tiny_roberta()
    assert max_difference(roberta(model, cfg.model), task.source_dictionary, model.max_positions()) < 1e-4
    pre_norm, _, pre_norm_cfg = tiny_roberta(encoder_normalize_before=True)
    with pytest.raises(ConfigError, match=r"a pre-norm encoder \(--encoder-normalize-before\)"):
        roberta(pre_norm, pre_norm_cfg.model)
    model.register_classification_head("sentiment", num_classes=2)
    model.register_classification_head("topic", num_classes=3)
    with pytest.raises(ConfigError, match="exports one classification head; this checkpoint has sentiment, topic"):
        roberta(model, cfg.model)


def test_differing_logits_are_refused_before_anything_is_written(tmp_path, monkeypatch):
    """A mapping that puts one weight off (as a wrong position offset or a transposed matrix would) is caught:
    the export fails with the largest difference, and neither the directory nor its staging copy is left."""
    from fairseq_compress.deploy import to_transformers, write_directory

    monkeypatch.setattr(to_transformers, "load_model", lambda path, data: tiny_roberta())
    mapped = to_transformers.load

    def load_one_weight_off(hf_model, state):
        hf_model = mapped(hf_model, state)
        with torch.no_grad():
            hf_model.roberta.encoder.layer[0].output.dense.weight[0, 0] += 0.1
        return hf_model

    monkeypatch.setattr(to_transformers, "load", load_one_weight_off)
    out = tmp_path / "hf"
    with pytest.raises(AssertionError, match="Tensor-likes are not close"):
        write_directory(str(out), lambda staging: to_transformers.export_transformers("model.pt", staging))
    assert not any(tmp_path.iterdir())
