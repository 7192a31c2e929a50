"""``fairseq-compress export --format ctranslate2``: a translation checkpoint as a CTranslate2
model directory that translates on its own (the model, its vocabularies and the sentencepiece
model of the data directory).

CTranslate2's ``FairseqConverter`` loads the checkpoint itself and accepts only archs registered
on the model name ``transformer``, so it takes neither the plugin's archs (``compress_transformer``)
nor pruning-task, compressed or shrunk checkpoints. Here the model is loaded by the plugin
(masks folded, compressed files decoded, shrunk layers at their shapes), the CTranslate2 spec is
built with its spec API (explicit ``head_dim`` for shrunk attention), and CTranslate2's own fairseq
layer setters (``set_transformer_encoder`` / ``set_transformer_decoder``) fill it: nothing of the
format is written by hand.
"""
import argparse
import os
import shutil
import tempfile
from typing import NamedTuple, Optional

import torch
from ctranslate2.converters import fairseq as ct2_fairseq
from ctranslate2.converters.converter import Converter
from ctranslate2.specs import transformer_spec
from fairseq.models.transformer import TransformerModel
from fairseq.utils import safe_getattr

from ..errors import ConfigError
from ..model_loading import load_model
from . import SPM_MODEL
from .vocabulary_map import write_vocabulary_map

QUANTIZATIONS = ("int8", "int8_float32", "int8_float16", "float16", "float32")


class VmapSize(NamedTuple):
    top_k: int = 20  # target pieces per source piece
    frequent: int = 100  # most frequent target pieces, always allowed


def stack_heads(layers, attention_names):
    """(heads, head_dim) of every attention module of a stack, which CTranslate2 holds once per stack."""
    shapes = {(getattr(layer, name).num_heads, getattr(layer, name).head_dim)
              for layer in layers for name in attention_names}
    if len(shapes) != 1:
        raise ConfigError(f"CTranslate2 needs one head count per stack; this shrunk model has "
                          f"{sorted(heads for heads, _ in shapes)}: shrink with the same --heads-keep for every layer")
    return shapes.pop()


def model_spec(model, args) -> transformer_spec.TransformerSpec:
    activation = safe_getattr(args, "activation_fn", "relu")
    if activation not in ct2_fairseq._SUPPORTED_ACTIVATIONS:
        raise ConfigError(f"--activation-fn {activation}: CTranslate2 supports "
                          f"{', '.join(ct2_fairseq._SUPPORTED_ACTIVATIONS)}")
    pre_norm = bool(safe_getattr(args, "encoder_normalize_before", False))
    if pre_norm != bool(safe_getattr(args, "decoder_normalize_before", False)):
        raise ConfigError("CTranslate2 needs --encoder-normalize-before and --decoder-normalize-before equal")
    if safe_getattr(args, "no_token_positional_embeddings", False):
        raise ConfigError("CTranslate2 does not support --no-token-positional-embeddings")
    encoder, decoder = model.encoder, model.decoder
    common = dict(pre_norm=pre_norm, activation=ct2_fairseq._SUPPORTED_ACTIVATIONS[activation],
                  layernorm_embedding=encoder.layernorm_embedding is not None)
    heads, head_dim = stack_heads(encoder.layers, ["self_attn"])
    encoder_spec = transformer_spec.TransformerEncoderSpec(len(encoder.layers), heads, head_dim=head_dim, **common)
    heads, head_dim = stack_heads(decoder.layers, ["self_attn", "encoder_attn"])
    decoder_spec = transformer_spec.TransformerDecoderSpec(
        len(decoder.layers), heads, head_dim=head_dim, project_in_out=decoder.project_in_dim is not None, **common)
    return transformer_spec.TransformerSpec(encoder_spec, decoder_spec)


class LoadedModelConverter(Converter):
    """A CTranslate2 converter of a fairseq translation model already in memory."""

    def __init__(self, model, task, args):
        self.model, self.task, self.args = model, task, args

    def _load(self):
        spec = model_spec(self.model, self.args)
        with torch.no_grad():
            ct2_fairseq.set_transformer_encoder(spec.encoder, self.model.encoder)
            ct2_fairseq.set_transformer_decoder(spec.decoder, self.model.decoder)
        spec.register_source_vocabulary(ct2_fairseq._get_vocab(self.task.source_dictionary))
        spec.register_target_vocabulary(ct2_fairseq._get_vocab(self.task.target_dictionary))
        # What FairseqConverter sets: fairseq starts decoding from </s> and ends every source with it.
        spec.config.decoder_start_token = spec.config.eos_token
        spec.config.add_source_eos = True
        return spec


def check_quantization(quantization):
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise ConfigError(f"--quantization {quantization}: allowed values are {', '.join(QUANTIZATIONS)}")


def export_ctranslate2(path: str, data: str, out: str, quantization=None, vmap: Optional[VmapSize] = None) -> dict:
    """Write the CTranslate2 model of the translation checkpoint `path` into the new directory `out`,
    with a vocabulary map of `data`'s training split when `vmap` is given."""
    check_quantization(quantization)
    if vmap is not None and not (vmap.top_k >= 1 and vmap.frequent >= 0):
        raise ConfigError(f"--vmap-top-k must be >= 1 and --vmap-frequent >= 0, got {vmap.top_k} and {vmap.frequent}")
    if not os.path.isfile(os.path.join(data, SPM_MODEL)):
        raise ConfigError(f"--data {data} has no {SPM_MODEL}: pass the data-bin of scripts/prepare_mt.sh, "
                          "whose sentencepiece model goes with the exported model")
    model, task, cfg = load_model(path, data)
    if not isinstance(model, TransformerModel):
        raise ConfigError(f"--format ctranslate2 holds Transformer translation models; {path} is a "
                          f"{type(model).__name__} (arch {safe_getattr(cfg.model, 'arch', '?')})")
    args = cfg.model if isinstance(cfg.model, argparse.Namespace) else argparse.Namespace(**cfg.model)
    model.requires_grad_(False)  # CTranslate2's setters call .numpy() on the weights
    report = {"format": "ctranslate2", "quantization": quantization or "float32"}
    with tempfile.TemporaryDirectory() as scratch:
        vmap_file = None
        if vmap is not None:
            vmap_file = os.path.join(scratch, "vmap.txt")
            report["vmap_lines"] = write_vocabulary_map(vmap_file, task, vmap.top_k, vmap.frequent)
        LoadedModelConverter(model, task, args).convert(out, vmap=vmap_file, quantization=quantization)
    shutil.copy(os.path.join(data, SPM_MODEL), os.path.join(out, SPM_MODEL))
    return report
