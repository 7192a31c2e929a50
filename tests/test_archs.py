"""The sized architectures: registry and parameter counts against closed forms."""
import pytest
from fairseq import options, tasks
from fairseq.data import Dictionary
from fairseq.models import ARCH_MODEL_REGISTRY

import fairseq_compress  # noqa: F401  (registers the archs)
from fairseq_compress.models.arch_grid import DEPTHS, STUDENT_DECODER_DEPTHS, STUDENT_ENCODER_DEPTHS, WIDTHS

from conftest import USER_DIR

VOCAB = 1000


def write_dictionary(path, size=VOCAB):
    d = Dictionary()
    for i in range(size):
        d.add_symbol(f"w{i}", n=size - i)
    d.save(str(path))


def build(arch, task, data, extra=()):
    parser = options.get_training_parser(default_task=task)
    args = options.parse_args_and_arch(
        parser, [str(data), "--task", task, "--arch", arch, "--user-dir", str(USER_DIR), *extra]
    )
    task = tasks.setup_task(args)
    return task.build_model(args), task, args


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def transformer_params(vocab, layers, width, decoder_layers=None):
    """Pre-norm encoder-decoder (decoder as deep as the encoder unless given), all embeddings
    shared, sinusoidal positions."""
    attention = 4 * width * width + 4 * width
    ffn = 8 * width * width + 5 * width
    layer_norm = 2 * width
    encoder_layer = attention + ffn + 2 * layer_norm
    decoder_layer = 2 * attention + ffn + 3 * layer_norm
    decoder_layers = layers if decoder_layers is None else decoder_layers
    return vocab * width + layers * encoder_layer + decoder_layers * decoder_layer + 2 * layer_norm


def roberta_params(vocab, layers, width, max_positions=512):
    """Post-norm encoder, learned positions (+2 for fairseq's padding offset), tied LM head."""
    layer = 12 * width * width + 13 * width
    embeddings = vocab * width + (max_positions + 2) * width + 2 * width
    lm_head = width * width + width + 2 * width + vocab
    return embeddings + layers * layer + lm_head


@pytest.mark.parametrize("family", ["transformer", "roberta"])
def test_every_size_of_the_grid_is_registered(family):
    names = {f"{family}_l{layers}_h{width}" for layers in DEPTHS for width in WIDTHS}
    assert len(names) == 30
    assert names <= set(ARCH_MODEL_REGISTRY)
    model_classes = {ARCH_MODEL_REGISTRY[name].__name__ for name in names}
    assert model_classes == {f"Compress{family.capitalize()}Model"}


@pytest.fixture(scope="module")
def mt_dicts(tmp_path_factory):
    data = tmp_path_factory.mktemp("dicts")
    for lang in ("en", "fr"):
        write_dictionary(data / f"dict.{lang}.txt")
    write_dictionary(data / "dict.txt")
    return data


@pytest.mark.parametrize("layers,width", [(2, 128), (3, 256), (6, 512)])
def test_transformer_param_count_matches_formula(mt_dicts, layers, width):
    model, task, args = build(f"transformer_l{layers}_h{width}", "translation", mt_dicts, ["-s", "en", "-t", "fr"])
    assert args.encoder_attention_heads == args.decoder_attention_heads == width // 64
    assert args.encoder_ffn_embed_dim == 4 * width
    assert len(model.encoder.layers) == len(model.decoder.layers) == layers
    assert model.encoder.embed_tokens.weight is model.decoder.embed_tokens.weight
    assert n_params(model) == transformer_params(len(task.source_dictionary), layers, width)


@pytest.mark.parametrize("layers,width", [(2, 128), (3, 256), (12, 768)])
def test_roberta_param_count_matches_formula(mt_dicts, layers, width):
    model, task, args = build(f"roberta_l{layers}_h{width}", "masked_lm", mt_dicts)
    assert args.encoder_attention_heads == width // 64
    assert len(model.encoder.sentence_encoder.layers) == layers
    assert n_params(model) == roberta_params(len(task.source_dictionary), layers, width, args.max_positions)


def test_command_line_overrides_the_arch_defaults(mt_dicts):
    _, _, args = build("roberta_l2_h128", "masked_lm", mt_dicts, ["--encoder-layers", "3", "--encoder-attention-heads", "4"])
    assert args.encoder_layers == 3 and args.encoder_attention_heads == 4 and args.encoder_embed_dim == 128


def test_every_student_shape_is_registered():
    names = {f"transformer_e{e}d{d}_h{w}" for e in STUDENT_ENCODER_DEPTHS for d in STUDENT_DECODER_DEPTHS for w in WIDTHS}
    assert {"transformer_e6d1_h256", "transformer_e3d1_h256", "transformer_e6d2_h256"} <= names <= set(ARCH_MODEL_REGISTRY)
    assert {ARCH_MODEL_REGISTRY[name].__name__ for name in names} == {"CompressTransformerModel"}


@pytest.mark.parametrize("encoder_layers,decoder_layers,width", [(6, 1, 256), (3, 2, 128)])
def test_student_param_count_matches_formula(mt_dicts, encoder_layers, decoder_layers, width):
    model, task, args = build(f"transformer_e{encoder_layers}d{decoder_layers}_h{width}", "translation", mt_dicts,
                              ["-s", "en", "-t", "fr"])
    assert (len(model.encoder.layers), len(model.decoder.layers)) == (encoder_layers, decoder_layers)
    assert args.encoder_normalize_before and args.decoder_normalize_before
    assert n_params(model) == transformer_params(len(task.source_dictionary), encoder_layers, width, decoder_layers)


def test_a_student_flag_on_the_command_line_wins(mt_dicts):
    model, _, _ = build("transformer_e6d1_h256", "translation", mt_dicts, ["-s", "en", "-t", "fr", "--decoder-layers", "2"])
    assert (len(model.encoder.layers), len(model.decoder.layers)) == (6, 2)
