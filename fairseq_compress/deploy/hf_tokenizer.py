"""The tokenizer of an exported encoder: the data directory's sentencepiece model with the ids of
the fairseq dictionary, as a ``tokenizers`` Unigram model that ``AutoTokenizer.from_pretrained``
loads offline.

Why not transformers' own ``SpmConverter``: it needs ``protobuf`` (not a dependency) to read the
model's normalizer, and it numbers pieces in sentencepiece's order, while the model's ids are
fairseq's dictionary order (``<s> <pad> </s> <unk>``, then pieces by frequency). The pieces and
scores are read with sentencepiece's own API; the normalization is NFKC with sentencepiece's
whitespace handling, which is what ``nmt_nfkc`` (the default rule of fairseq_compress/pipelines/spm.py) does to
text outside rare control characters.
"""
import os

import sentencepiece
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from ..errors import ConfigError
from . import SPM_MODEL

SPECIAL_TOKENS = {"bos_token": "<s>", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>",
                  "cls_token": "<s>", "sep_token": "</s>", "mask_token": "<mask>"}


def fairseq_unigram(dictionary, spm_path: str) -> Tokenizer:
    """Sentencepiece's segmentation, with fairseq's ids: the pieces of `dictionary` scored as in the
    sentencepiece model; dictionary symbols that are not pieces (the specials) are special tokens."""
    processor = sentencepiece.SentencePieceProcessor(model_file=spm_path)
    scores = {processor.id_to_piece(i): processor.get_score(i) for i in range(processor.get_piece_size())
              if not (processor.is_unknown(i) or processor.is_control(i))}
    never = min(scores.values()) - 100.0  # the specials are matched as added tokens, never by the lattice
    vocab = [(symbol, scores.get(symbol, never)) for symbol in dictionary.symbols]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=dictionary.unk(), byte_fallback=False))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " "), normalizers.Strip()])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    specials = [symbol for symbol in dictionary.symbols if symbol not in scores]
    tokenizer.add_special_tokens(specials)
    bos, eos = dictionary[dictionary.bos()], dictionary[dictionary.eos()]
    # fairseq's sentence_prediction input: <s> A </s>, and <s> A </s> </s> B </s> for pairs (--separator-token 2)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, dictionary.bos()), (eos, dictionary.eos())])
    return tokenizer


def write_tokenizer(dictionary, data: str, out: str) -> str:
    """Save the tokenizer of `dictionary` and DATA/spm.model into `out`; return what was written."""
    from transformers import PreTrainedTokenizerFast

    spm_path = os.path.join(data, SPM_MODEL)
    if not os.path.isfile(spm_path):
        raise ConfigError(f"--data {data} has no {SPM_MODEL}: pass the data-bin the model was trained on "
                          "(scripts/prepare_mlm.sh writes it)")
    specials = {name: token for name, token in SPECIAL_TOKENS.items() if dictionary.index(token) != dictionary.unk()
                or token == "<unk>"}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=fairseq_unigram(dictionary, spm_path), **specials)
    tokenizer.save_pretrained(out)
    return "tokenizer.json"
