"""ELECTRA (Clark et al., 2020): a small generator MLM and a discriminator that
detects the tokens the generator replaced; only the discriminator is fine-tuned.

The model is fairseq's RoBERTa (``RobertaModel``/``RobertaEncoder``) with three
changes, so ``sentence_prediction`` fine-tuning and ``fairseq-validate`` need no
custom task: the embedding has its own size (projected to the hidden size), the
output layer is the replaced-token-detection head, and the encoder holds a
generator. Both transformers are fairseq ``TransformerEncoder`` stacks (the same
layers as ``roberta_l*_h*``), so DropHead, quant-noise and pruning apply as is.
"""
import copy

import torch
import torch.nn.functional as F
from fairseq import utils
from fairseq.models import register_model, register_model_architecture
from fairseq.models.roberta import RobertaEncoder, RobertaModel
from fairseq.models.roberta.model import base_architecture
from fairseq.models.transformer import TransformerEncoder
from fairseq.modules import LayerNorm
from fairseq.modules.transformer_sentence_encoder import init_bert_params
from fairseq.utils import safe_getattr, safe_hasattr
from torch import nn

from ..errors import ConfigError
from ..modules.int8_inference import Int8InferenceMixin
from ..modules.scheduled_drophead import ScheduledDropHeadMixin
from .activation_checkpointing import ActivationCheckpointingMixin
from .layer_shapes import LayerShapesMixin

MODEL_NAME = "electra"
GENERATOR_PREFIX = "encoder.generator."


class ProjectedTransformerEncoder(TransformerEncoder):
    """fairseq's TransformerEncoder whose embeddings (token + position, LayerNorm,
    dropout) have their own size, projected to the layers' width. fairseq's
    encoder assumes the two are equal; ELECTRA-Small embeds in 128 and runs 256."""

    def __init__(self, args, dictionary, embed_tokens):
        super().__init__(args, dictionary, embed_tokens)
        embed_dim, hidden = embed_tokens.embedding_dim, args.encoder_embed_dim
        self.embed_projection = nn.Linear(embed_dim, hidden) if embed_dim != hidden else None
        if self.layer_norm is not None:  # pre-norm: the final LayerNorm acts on the layers' width
            self.layer_norm = LayerNorm(hidden)

    def forward_embedding(self, src_tokens, token_embedding=None):
        x, embed = super().forward_embedding(src_tokens, token_embedding)
        if self.embed_projection is not None:
            x = self.embed_projection(x)
        return x, embed


# Re-implements: fairseq 0.12.3.1 (fairseq-fixed) fairseq.models.roberta.model.RobertaLMHead (dense -> activation ->
# LayerNorm -> projection tied to the embedding + bias), with the dense layer mapping the generator's width to
# the embedding size. No test holds the two equal: their shapes differ whenever those widths do.
class GeneratorHead(nn.Module):
    """ELECTRA's MLM output layer: dense -> activation -> LayerNorm -> logits tied to
    the input embedding (+ bias). Like fairseq's RobertaLMHead, except that the
    dense layer maps the generator's width to the embedding size."""

    def __init__(self, hidden, embedding_weight, activation_fn):
        super().__init__()
        embed_dim = embedding_weight.size(1)
        self.dense = nn.Linear(hidden, embed_dim)
        self.activation_fn = utils.get_activation_fn(activation_fn)
        self.layer_norm = LayerNorm(embed_dim)
        self.weight = embedding_weight
        self.bias = nn.Parameter(torch.zeros(embedding_weight.size(0)))

    def forward(self, features):
        x = self.layer_norm(self.activation_fn(self.dense(features)))
        return F.linear(x, self.weight) + self.bias


class DiscriminatorHead(nn.Module):
    """Replaced-token detection: dense -> activation -> one logit per token."""

    def __init__(self, hidden, activation_fn):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.activation_fn = utils.get_activation_fn(activation_fn)
        self.out_proj = nn.Linear(hidden, 1)

    def forward(self, features, masked_tokens=None, **unused):
        return self.out_proj(self.activation_fn(self.dense(features))).squeeze(-1)


class ElectraGenerator(nn.Module):
    """The generator MLM; it shares token/position embeddings and the embedding
    LayerNorm with the discriminator and has its own layers and projection."""

    def __init__(self, args, dictionary, discriminator):
        super().__init__()
        self.encoder = ProjectedTransformerEncoder(args, dictionary, discriminator.embed_tokens)
        self.encoder.apply(init_bert_params)
        self.encoder.embed_positions = discriminator.embed_positions
        self.encoder.layernorm_embedding = discriminator.layernorm_embedding
        self.lm_head = GeneratorHead(args.encoder_embed_dim, discriminator.embed_tokens.weight, args.activation_fn)

    def forward(self, src_tokens, masked_tokens):
        """Logits [n_masked, vocab] at the positions where ``masked_tokens`` is True."""
        features = self.encoder(src_tokens)["encoder_out"][0].transpose(0, 1)
        return self.lm_head(features[masked_tokens])


class ElectraEncoder(RobertaEncoder):
    """The discriminator (``sentence_encoder``, ``lm_head`` = detection head) plus
    ``generator``, which ``drop_generator`` removes for fine-tuning."""

    def __init__(self, args, dictionary):
        super().__init__(args, dictionary)
        self.generator = ElectraGenerator(generator_args(args), dictionary, self.sentence_encoder)

    def build_embedding(self, vocab_size, embedding_dim, padding_idx):
        return nn.Embedding(vocab_size, self.args.embedding_size, padding_idx)

    def build_encoder(self, args, dictionary, embed_tokens):
        encoder = ProjectedTransformerEncoder(args, dictionary, embed_tokens)
        encoder.apply(init_bert_params)
        return encoder

    def build_lm_head(self, embed_dim, output_dim, activation_fn, weight):
        return DiscriminatorHead(embed_dim, activation_fn)

    def drop_generator(self):
        self.generator = None


def generator_args(args):
    """The generator's size: the discriminator's depth, its width, FFN and heads
    divided by --generator-size-divisor (the paper's best: 1/4)."""
    divisor = args.generator_size_divisor
    gen = copy.deepcopy(args)
    gen.encoder_embed_dim = args.encoder_embed_dim // divisor
    gen.encoder_ffn_embed_dim = args.encoder_ffn_embed_dim // divisor
    gen.encoder_attention_heads = args.encoder_attention_heads // divisor
    return gen


def check_electra_args(args):
    divisor = args.generator_size_divisor
    sizes = {"--encoder-embed-dim": args.encoder_embed_dim, "--encoder-attention-heads": args.encoder_attention_heads,
             "--encoder-ffn-embed-dim": args.encoder_ffn_embed_dim}
    if not isinstance(divisor, int) or divisor < 1:
        raise ConfigError(f"--generator-size-divisor must be a positive integer, got {divisor}")
    for flag, size in sizes.items():
        if size % divisor:
            raise ConfigError(f"--generator-size-divisor {divisor} must divide {flag} ({size}); "
                              f"allowed: divisors of {', '.join(f'{k}={v}' for k, v in sizes.items())}")
    if args.embedding_size < 1:
        raise ConfigError(f"--embedding-size must be a positive integer, got {args.embedding_size}")


class ElectraBase(RobertaModel):
    """RobertaModel around an ElectraEncoder (RobertaModel.build_model hard-codes
    RobertaEncoder, so this layer swaps it; DropHead wraps this class)."""

    @classmethod
    def build_model(cls, args, task):
        electra_base_architecture(args)
        check_electra_args(args)
        if not safe_hasattr(args, "max_positions"):
            args.max_positions = safe_getattr(args, "tokens_per_sample", None) or task.max_positions()
        return cls(args, ElectraEncoder(args, task.source_dictionary))


@register_model(MODEL_NAME)
class ElectraModel(ActivationCheckpointingMixin, Int8InferenceMixin, ScheduledDropHeadMixin, LayerShapesMixin,
                   ElectraBase):
    @classmethod
    def add_args(cls, parser):
        super().add_args(parser)
        group = parser.add_argument_group("ELECTRA")
        group.add_argument("--embedding-size", type=int, metavar="E",
                           help="token/position embedding size, projected to --encoder-embed-dim when different")
        group.add_argument("--generator-size-divisor", type=int, metavar="D",
                           help="generator width, FFN and heads = the discriminator's / D (default: 3 for "
                                "electra_base, else 4, as in the paper)")

    @property
    def generator(self):
        return self.encoder.generator

    def forward(self, src_tokens, features_only=False, return_all_hiddens=False, classification_head_name=None,
                generator_mask=None, sample_replacements=None, **kwargs):
        """RobertaModel's forward; in pretraining (``generator_mask`` given) the
        generator first fills the masked positions with tokens drawn by
        ``sample_replacements(logits)``, and the discriminator reads the result.
        Both run in this one call so that a data-parallel wrapper (DDP,
        ``--find-unused-parameters``) sees every parameter the loss uses. The extra
        output holds ``gen_logits`` [n_masked, vocab] and the ``corrupted`` input."""
        if generator_mask is None:
            return super().forward(src_tokens, features_only, return_all_hiddens, classification_head_name, **kwargs)
        gen_logits = self.generator(src_tokens, generator_mask)
        with torch.no_grad():  # the discriminator's loss never reaches the generator
            corrupted = replace_masked(src_tokens, generator_mask, sample_replacements(gen_logits.detach()))
        x, extra = super().forward(corrupted, features_only, return_all_hiddens, classification_head_name, **kwargs)
        return x, {**extra, "gen_logits": gen_logits, "corrupted": corrupted}

    def register_classification_head(self, name, num_classes=None, inner_dim=None, **kwargs):
        """A classification head means fine-tuning (sentence_prediction): only the
        discriminator is used, so the generator is dropped from the model and from
        any checkpoint loaded into it or saved from it."""
        super().register_classification_head(name, num_classes, inner_dim, **kwargs)
        self.encoder.drop_generator()

    def upgrade_state_dict_named(self, state_dict, name):
        super().upgrade_state_dict_named(state_dict, name)
        if self.encoder.generator is None:
            prefix = (name + "." if name else "") + GENERATOR_PREFIX
            for key in [k for k in state_dict if k.startswith(prefix)]:
                del state_dict[key]


def replace_masked(masked_input, masked, sampled):
    """The discriminator's input: the generator's samples at the masked positions."""
    corrupted = masked_input.clone()
    corrupted[masked] = sampled
    return corrupted


def electra_base_architecture(args):
    """Defaults: the RoBERTa/BERT encoder, embedding = hidden, generator at 1/4."""
    base_architecture(args)
    args.embedding_size = safe_getattr(args, "embedding_size", None) or args.encoder_embed_dim
    args.generator_size_divisor = safe_getattr(args, "generator_size_divisor", None) or 4


ELECTRA_SIZES = {
    # name: (layers, hidden, heads, FFN, embedding, generator divisor); the divisors are the
    # paper's and Google's code's: Base's generator is 1/3 wide (256 of 768, 4 heads), Small's
    # and Large's 1/4
    "electra_tiny": (2, 128, 4, 512, 64, 4),
    "electra_small": (12, 256, 4, 1024, 128, 4),
    "electra_base": (12, 768, 12, 3072, 768, 3),
    "electra_large": (24, 1024, 16, 4096, 1024, 4),
}


def register_electra_archs():
    for name, (layers, hidden, heads, ffn, embedding, divisor) in ELECTRA_SIZES.items():

        def arch(args, layers=layers, hidden=hidden, heads=heads, ffn=ffn, embedding=embedding, divisor=divisor):
            args.encoder_layers = safe_getattr(args, "encoder_layers", layers)
            args.encoder_embed_dim = safe_getattr(args, "encoder_embed_dim", hidden)
            args.encoder_attention_heads = safe_getattr(args, "encoder_attention_heads", heads)
            args.encoder_ffn_embed_dim = safe_getattr(args, "encoder_ffn_embed_dim", ffn)
            args.embedding_size = safe_getattr(args, "embedding_size", None) or embedding
            args.generator_size_divisor = safe_getattr(args, "generator_size_divisor", None) or divisor
            electra_base_architecture(args)

        register_model_architecture(MODEL_NAME, name)(arch)


register_electra_archs()
