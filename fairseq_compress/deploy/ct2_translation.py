"""Batch translation with a CTranslate2 model directory (``fairseq-compress export --format
ctranslate2``) the way ``fairseq-generate`` batches and caps: sentences sorted by length, hypotheses
capped per batch at max_len_a x the batch's longest source (with its </s>) + max_len_b tokens.
``scripts/eval_bleu.sh`` (through fairseq_compress/pipelines/ct2_translate.py) and ``fairseq-compress distill-data``
translate with it."""
import os
import time
from typing import Callable, List, Optional, Sequence

from ..errors import ConfigError
from . import SPM_MODEL

Pieces = List[str]


def ct2_translator(model_dir: str, threads: int = 0, flag: str = "--model"):
    """A one-process CPU Translator of `model_dir`, refused in one line unless it is an exported
    directory: the model and the sentencepiece model that defines its pieces."""
    import ctranslate2

    for name in ("model.bin", SPM_MODEL):
        if not os.path.isfile(os.path.join(model_dir, name)):
            raise ConfigError(f"{flag} {model_dir} has no {name}: pass a directory written by fairseq-compress "
                              "export --format ctranslate2")
    return ctranslate2.Translator(model_dir, device="cpu", intra_threads=threads, inter_threads=1)


def translate_pieces(translator, pieces: Sequence[Pieces], beam: int, batch_size: int, max_len_a: float,
                     max_len_b: int, use_vmap: bool = False,
                     progress: Optional[Callable[[int], None]] = None) -> tuple:
    """(hypotheses as pieces, in input order; seconds spent translating). `progress(n)` is called
    after each batch of n sentences."""
    order = sorted(range(len(pieces)), key=lambda i: len(pieces[i]))
    hypotheses: List[Optional[Pieces]] = [None] * len(pieces)
    seconds = 0.0
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        longest = max(len(pieces[i]) for i in batch) + 1  # fairseq's source length counts </s>
        began = time.perf_counter()
        results = translator.translate_batch([pieces[i] for i in batch], beam_size=beam, max_batch_size=batch_size,
                                             max_decoding_length=int(max_len_a * longest + max_len_b),
                                             use_vmap=use_vmap)
        seconds += time.perf_counter() - began
        for i, result in zip(batch, results, strict=True):
            hypotheses[i] = result.hypotheses[0]
        if progress:
            progress(len(batch))
    return hypotheses, seconds
