"""``fairseq-compress export --format transformers``: an encoder checkpoint as a Hugging Face
``transformers`` model directory (config.json + safetensors, and the tokenizer), which loads
offline with ``transformers`` alone.

transformers' own RoBERTa converter needs fairseq's hub code (broken on fairseq >= 0.10) and it
has no ELECTRA converter from fairseq, so the mapping is written here: the model is loaded by the
plugin (masks folded, compressed files decoded), its modules are mapped onto the transformers
class's state dict (every tensor of it but the buffers it builds itself, nothing else), and the two
models' logits are compared on a batch before anything is written.

- ``roberta_l*`` / stock ``roberta_*``: ``RobertaForMaskedLM``, or with a ``sentence_prediction``
  head ``RobertaForSequenceClassification``. Both number positions from ``padding_idx + 1`` as
  fairseq does, so the position table is copied whole.
- ELECTRA: ``ElectraForPreTraining`` (the discriminator, the default ``--part``) or
  ``ElectraForMaskedLM`` (``--part generator``); a fine-tuned one with a gelu pooler
  (``--pooler-activation-fn gelu``) becomes ``ElectraForSequenceClassification``. transformers'
  ELECTRA numbers positions from 0: the table loses its first ``padding_idx + 1`` rows.
"""
from dataclasses import dataclass
from typing import Callable, Dict

import torch
from fairseq.models.roberta import RobertaModel
from fairseq.utils import safe_getattr
from torch import nn

from ..errors import ConfigError
from ..model_loading import load_model
from ..models.electra import ElectraModel
from .hf_tokenizer import write_tokenizer

PARTS = ("discriminator", "generator")
# fairseq --activation-fn -> transformers hidden_act (gelu_accurate is the tanh approximation).
ACTIVATIONS = {"gelu": "gelu", "gelu_accurate": "gelu_new", "relu": "relu", "tanh": "tanh", "linear": "linear"}
TOLERANCE = dict(rtol=1e-4, atol=1e-4)


@dataclass
class Exported:
    model: nn.Module  # the transformers model, weights loaded
    fairseq_outputs: Callable[[torch.Tensor], torch.Tensor]  # tokens -> the logits the model must give


def linear(prefix: str, module: nn.Module) -> Dict[str, torch.Tensor]:
    """The weight and bias of `module` (a Linear or a LayerNorm) under `prefix`."""
    return {f"{prefix}.weight": module.weight, f"{prefix}.bias": module.bias}


def encoder_config(encoder, args) -> dict:
    """The transformers BERT-style config of a fairseq TransformerEncoder, or a one-line error
    naming what transformers' RoBERTa / ELECTRA cannot hold."""
    if encoder.layer_norm is not None:
        raise ConfigError("--format transformers: a pre-norm encoder (--encoder-normalize-before) has no "
                          "transformers RoBERTa/ELECTRA class")
    if encoder.layernorm_embedding is None or encoder.embed_scale not in (None, 1.0):
        raise ConfigError("--format transformers needs RoBERTa's embeddings: --layernorm-embedding and "
                          "--no-scale-embedding")
    activation = safe_getattr(args, "activation_fn", "gelu")
    if activation not in ACTIVATIONS:
        raise ConfigError(f"--activation-fn {activation}: transformers holds {', '.join(ACTIVATIONS)}")
    layers = encoder.layers
    heads = {layer.self_attn.num_heads for layer in layers}
    widths = {layer.fc1.out_features for layer in layers}
    hidden = encoder.layers[0].self_attn.q_proj.in_features
    if len(heads) != 1 or len(widths) != 1 or layers[0].self_attn.q_proj.out_features != hidden:
        raise ConfigError("--format transformers needs every layer with all its heads and the same FFN width "
                          "(transformers' RoBERTa/ELECTRA have one head size = hidden / heads): export the model "
                          "before shrink --heads-keep, or shrink with the same --ffn-keep for every layer")
    return dict(vocab_size=encoder.embed_tokens.num_embeddings, hidden_size=hidden, num_hidden_layers=len(layers),
                num_attention_heads=heads.pop(), intermediate_size=widths.pop(), hidden_act=ACTIVATIONS[activation],
                hidden_dropout_prob=safe_getattr(args, "dropout", 0.1),
                attention_probs_dropout_prob=safe_getattr(args, "attention_dropout", 0.1),
                type_vocab_size=1, layer_norm_eps=encoder.layernorm_embedding.eps,
                pad_token_id=encoder.padding_idx, bos_token_id=0, eos_token_id=2)


def encoder_state(prefix: str, encoder, position_offset: int) -> Dict[str, torch.Tensor]:
    """A fairseq TransformerEncoder's tensors under the names of a transformers BERT-style model."""
    positions = encoder.embed_positions.weight[position_offset:]
    state = {f"{prefix}.embeddings.word_embeddings.weight": encoder.embed_tokens.weight,
             f"{prefix}.embeddings.position_embeddings.weight": positions,
             f"{prefix}.embeddings.token_type_embeddings.weight": positions.new_zeros(1, positions.size(1)),
             **linear(f"{prefix}.embeddings.LayerNorm", encoder.layernorm_embedding)}
    for i, layer in enumerate(encoder.layers):
        at = f"{prefix}.encoder.layer.{i}"
        attention = layer.self_attn
        state.update({**linear(f"{at}.attention.self.query", attention.q_proj),
                      **linear(f"{at}.attention.self.key", attention.k_proj),
                      **linear(f"{at}.attention.self.value", attention.v_proj),
                      **linear(f"{at}.attention.output.dense", attention.out_proj),
                      **linear(f"{at}.attention.output.LayerNorm", layer.self_attn_layer_norm),
                      **linear(f"{at}.intermediate.dense", layer.fc1),
                      **linear(f"{at}.output.dense", layer.fc2),
                      **linear(f"{at}.output.LayerNorm", layer.final_layer_norm)})
    return state


def classification_head(model):
    """(name, head) of the one sentence_prediction head of `model`, or (None, None)."""
    heads = dict(model.classification_heads)
    if len(heads) > 1:
        raise ConfigError(f"--format transformers exports one classification head; this checkpoint has "
                          f"{', '.join(heads)}")
    if not heads:
        return None, None
    name, head = heads.popitem()
    return name, head


def classifier_state(prefix: str, head) -> Dict[str, torch.Tensor]:
    return {**linear(f"{prefix}.dense", head.dense), **linear(f"{prefix}.out_proj", head.out_proj)}


def logits(hf_model, tokens, mask):
    return hf_model(input_ids=tokens, attention_mask=mask).logits


def roberta(model, args) -> Exported:
    import transformers

    encoder = model.encoder.sentence_encoder
    name, head = classification_head(model)
    pooler = safe_getattr(args, "pooler_activation_fn", "tanh")
    config = encoder_config(encoder, args)
    config["max_position_embeddings"] = encoder.embed_positions.num_embeddings
    state = encoder_state("roberta", encoder, position_offset=0)
    if head is not None:
        if pooler != "tanh":
            raise ConfigError(f"--pooler-activation-fn {pooler}: transformers' RoBERTa classifier uses tanh")
        hf = transformers.RobertaForSequenceClassification(
            transformers.RobertaConfig(**config, num_labels=head.out_proj.out_features))
        state.update(classifier_state("classifier", head))
        return Exported(load(hf, state), lambda tokens: model(tokens, features_only=True,
                                                              classification_head_name=name)[0])
    lm_head = model.encoder.lm_head
    hf = transformers.RobertaForMaskedLM(transformers.RobertaConfig(**config))
    state.update({**linear("lm_head.dense", lm_head.dense), **linear("lm_head.layer_norm", lm_head.layer_norm),
                  "lm_head.bias": lm_head.bias, "lm_head.decoder.weight": lm_head.weight,
                  "lm_head.decoder.bias": lm_head.bias})
    return Exported(load(hf, state), lambda tokens: model(tokens)[0])


def electra(model, args, part) -> Exported:
    import transformers

    encoder = model.encoder.sentence_encoder
    offset = encoder.padding_idx + 1  # transformers' ELECTRA numbers positions from 0
    common = dict(embedding_size=encoder.embed_tokens.embedding_dim,
                  max_position_embeddings=encoder.embed_positions.num_embeddings - offset)
    if part == "generator":
        generator = model.generator
        if generator is None:
            raise ConfigError("--part generator: this ELECTRA checkpoint was fine-tuned; its generator is gone")
        config = transformers.ElectraConfig(**encoder_config(generator.encoder, args), **common)
        hf = transformers.ElectraForMaskedLM(config)
        state = encoder_state("electra", generator.encoder, offset)
        head = generator.lm_head
        state.update({**projection_state(generator.encoder),
                      **linear("generator_predictions.dense", head.dense),
                      **linear("generator_predictions.LayerNorm", head.layer_norm),
                      "generator_lm_head.weight": head.weight, "generator_lm_head.bias": head.bias})

        def fairseq_outputs(tokens):
            return generator(tokens, torch.ones_like(tokens, dtype=torch.bool)).view(*tokens.shape, -1)

        return Exported(load(hf, state), fairseq_outputs)
    config = encoder_config(encoder, args)
    state = {**encoder_state("electra", encoder, offset), **projection_state(encoder)}
    name, head = classification_head(model)
    if head is not None:
        pooler = safe_getattr(args, "pooler_activation_fn", "tanh")
        if pooler != "gelu":
            raise ConfigError(f"--pooler-activation-fn {pooler}: transformers' ELECTRA classifier uses gelu; "
                              "fine-tune with --pooler-activation-fn gelu to export the head")
        hf = transformers.ElectraForSequenceClassification(
            transformers.ElectraConfig(**config, **common, num_labels=head.out_proj.out_features))
        state.update(classifier_state("classifier", head))
        return Exported(load(hf, state), lambda tokens: model(tokens, features_only=True,
                                                              classification_head_name=name)[0])
    hf = transformers.ElectraForPreTraining(transformers.ElectraConfig(**config, **common))
    detection = model.encoder.lm_head
    state.update({**linear("discriminator_predictions.dense", detection.dense),
                  **linear("discriminator_predictions.dense_prediction", detection.out_proj)})
    return Exported(load(hf, state), lambda tokens: model(tokens)[0])


def projection_state(encoder) -> Dict[str, torch.Tensor]:
    projection = getattr(encoder, "embed_projection", None)
    return linear("electra.embeddings_project", projection) if projection is not None else {}


def load(hf_model: nn.Module, state: Dict[str, torch.Tensor]) -> nn.Module:
    buffers = {name for name, _ in hf_model.named_buffers()}
    hf_model.load_state_dict({k: v.detach().clone() for k, v in state.items()}, strict=False)
    missing = set(hf_model.state_dict()) - set(state) - buffers
    unexpected = set(state) - set(hf_model.state_dict())
    if missing or unexpected:  # a mapping bug, not a user's error
        raise RuntimeError(f"transformers state dict mismatch: missing {sorted(missing)}, unexpected {sorted(unexpected)}")
    return hf_model.eval()


def sample_tokens(dictionary, max_positions: int, generator: torch.Generator) -> torch.Tensor:
    """Two sentences <s> ... </s> of random words, the second shorter and right-padded."""
    length = min(16, max_positions)
    words = torch.randint(dictionary.nspecial, len(dictionary), (2, length), generator=generator)
    words[:, 0], words[:, -1] = dictionary.bos(), dictionary.eos()
    words[1, length // 2:] = dictionary.pad()
    words[1, length // 2 - 1] = dictionary.eos()
    return words


def max_difference(exported: Exported, dictionary, max_positions: int) -> float:
    """The largest |fairseq - transformers| output on a sample batch, at the positions that are not padding."""
    tokens = sample_tokens(dictionary, max_positions, torch.Generator().manual_seed(0))
    mask = tokens.ne(dictionary.pad())
    with torch.no_grad():
        expected, actual = exported.fairseq_outputs(tokens), logits(exported.model, tokens, mask.long())
    if expected.dim() > 1 and expected.shape[:2] == tokens.shape:  # per-token outputs: padding excluded
        expected, actual = expected[mask], actual[mask]
    torch.testing.assert_close(actual, expected, **TOLERANCE)
    return float((actual - expected).abs().max())


def export_transformers(path: str, out: str, part=None, data=None) -> dict:
    """Write the transformers model of the encoder checkpoint `path` into the directory `out`."""
    if part is not None and part not in PARTS:
        raise ConfigError(f"--part {part}: allowed values are {', '.join(PARTS)}")
    model, task, cfg = load_model(path, data)
    args = cfg.model
    if isinstance(model, ElectraModel):
        exported = electra(model, args, part or "discriminator")
    elif isinstance(model, RobertaModel):
        if part is not None:
            raise ConfigError("--part applies to ELECTRA checkpoints (discriminator or generator)")
        exported = roberta(model, args)
    else:
        raise ConfigError(f"--format transformers holds RoBERTa and ELECTRA encoders; {path} is a "
                          f"{type(model).__name__} (arch {safe_getattr(args, 'arch', '?')})")
    dictionary = task.source_dictionary
    difference = max_difference(exported, dictionary, model.max_positions())
    exported.model.save_pretrained(out)
    tokenizer = write_tokenizer(dictionary, data or cfg.task.data, out)
    return {"format": "transformers", "class": type(exported.model).__name__,
            "max_abs_difference_to_fairseq": difference, "tokenizer": tokenizer}
