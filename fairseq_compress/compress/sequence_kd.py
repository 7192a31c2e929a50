"""``fairseq-compress distill-data``: the data of sequence-level knowledge distillation (Kim & Rush
2016): the training split's sources with the teacher's beam-search translations as targets, as a
data-bin that ``fairseq-train`` reads with the original dictionaries, valid and test splits.

fairseq has no tool for this (users decode the training set with fairseq-generate, then parse,
re-order and re-binarize its output by hand). The sources are read from the binarized split, so the
teacher sees exactly the pieces the student trains on. The teacher is a fairseq checkpoint (any the
plugin loads, translated in-process with fairseq's SequenceGenerator) or, ~4x faster on CPU, its
CTranslate2 export. Work goes to OUT.partial/ shard by shard (each shard's file is its stamp), so a
killed run resumes at the first missing shard; OUT appears only when every line is there.
"""
import glob
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from typing import Callable, List, Sequence

import torch

from ..checkpoint_safety import durable_replace
from ..errors import ConfigError

Pieces = List[str]
MANIFEST = "distill_data.json"


@dataclass(frozen=True)
class Settings:
    """What a shard's translations depend on: a resumed run must use the same."""
    teacher: str
    beam: int
    shard_size: int
    max_len_a: float
    max_len_b: int
    sentences: int


def language_pair(data: str) -> tuple:
    """(source, target) language of DATA's binarized training split train.SRC-TGT.SRC.idx."""
    pairs = {re.match(r"train\.([^.-]+)-([^.]+)\.", os.path.basename(p)).groups()
             for p in glob.glob(os.path.join(data, "train.*-*.*.idx"))}
    if len(pairs) != 1:
        raise ConfigError(f"--data {data} must hold one binarized translation training split "
                          f"train.SRC-TGT.{{SRC,TGT}}.bin (fairseq-preprocess); found {len(pairs)} pairs")
    return pairs.pop()


def translation_task(data: str, source: str, target: str):
    from fairseq.tasks.translation import TranslationConfig, TranslationTask

    # the fields a training run fills from its other sections (II(...)) are set here
    return TranslationTask.setup_task(TranslationConfig(
        _name="translation", data=data, source_lang=source, target_lang=target, train_subset="train",
        dataset_impl=None, required_seq_len_multiple=1))


def fairseq_translate(path: str, task, beam: int, batch_size: int, max_len_a: float, max_len_b: int) -> Callable:
    """translate(list of source id tensors ending in </s>) -> target pieces, with fairseq's
    SequenceGenerator on the checkpoint at `path`, refused unless it shares the data's dictionaries."""
    from fairseq.dataclass.configs import GenerationConfig

    from ..criterions.distillation import load_teacher

    model = load_teacher(path, task, flag="--teacher")
    generator = task.build_generator([model], GenerationConfig(beam=beam, max_len_a=max_len_a, max_len_b=max_len_b))
    target = task.target_dictionary

    @torch.no_grad()
    def translate(sources: Sequence[torch.Tensor]) -> List[Pieces]:
        dataset = task.build_dataset_for_inference(list(sources), [len(s) for s in sources])
        batches = task.get_batch_iterator(dataset, max_sentences=batch_size, required_batch_size_multiple=1,
                                          ignore_invalid_inputs=False).next_epoch_itr(shuffle=False)
        hypotheses = {}
        for sample in batches:
            for i, hypos in zip(sample["id"].tolist(), task.inference_step(generator, [model], sample), strict=True):
                hypotheses[i] = [target[t] for t in hypos[0]["tokens"].tolist() if t != target.eos()]
        return [hypotheses[i] for i in range(len(sources))]  # a KeyError here is a lost sentence

    return translate


def ct2_translate(model_dir: str, data: str, task, beam: int, batch_size: int, max_len_a: float,
                  max_len_b: int) -> Callable:
    """translate(...) like fairseq_translate's, with a CTranslate2 export of a teacher trained on
    `data`'s sentencepiece model."""
    from ..deploy import SPM_MODEL
    from ..deploy.ct2_translation import ct2_translator, translate_pieces

    translator = ct2_translator(model_dir, flag="--teacher")
    with open(os.path.join(model_dir, SPM_MODEL), "rb") as mine, open(os.path.join(data, SPM_MODEL), "rb") as theirs:
        if mine.read() != theirs.read():
            raise ConfigError(f"--teacher {model_dir}: its {SPM_MODEL} differs from --data {data}'s: the teacher "
                              "was exported from other data")
    source = task.source_dictionary

    def translate(sources: Sequence[torch.Tensor]) -> List[Pieces]:
        pieces = [[source[t] for t in s.tolist() if t != source.eos()] for s in sources]
        return translate_pieces(translator, pieces, beam, batch_size, max_len_a, max_len_b)[0]

    return translate


def check_out(out: str, settings: Settings) -> str:
    """The staging directory OUT.partial, created or resumed when it was started with `settings`."""
    if os.path.exists(out):
        raise ConfigError(f"--out {out} exists; choose a new directory (a killed run resumes from {out}.partial)")
    staging = f"{out}.partial"
    manifest = os.path.join(staging, MANIFEST)
    if os.path.isfile(manifest):
        with open(manifest) as f:
            started = json.load(f)
        if started != asdict(settings):
            raise ConfigError(f"--out {out}: {staging} was started with other settings ({started}); remove it or "
                              "rerun with the same --teacher, --beam, --shard-size and caps")
    else:
        os.makedirs(os.path.join(staging, "shards"), exist_ok=True)
        with open(manifest, "w") as f:
            json.dump(asdict(settings), f)
    return staging


def write_lines(path: str, lines: Sequence[Pieces]) -> None:
    with open(f"{path}.tmp", "w", encoding="utf-8") as f:
        f.writelines(" ".join(line) + "\n" for line in lines)
    durable_replace(f"{path}.tmp", path)


def count_lines(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for _ in f)


def binarize(staging: str, data: str, source: str, target: str) -> None:
    """fairseq-preprocess of the text train split with DATA's dictionaries, in-process."""
    from fairseq import options
    from fairseq_cli.preprocess import main as preprocess

    args = options.get_preprocessing_parser().parse_args([
        "--source-lang", source, "--target-lang", target, "--trainpref", os.path.join(staging, "text", "train"),
        "--srcdict", os.path.join(data, f"dict.{source}.txt"), "--tgtdict", os.path.join(data, f"dict.{target}.txt"),
        "--destdir", staging, "--workers", "1"])
    preprocess(args)


def copy_the_rest(data: str, staging: str) -> None:
    """DATA's dictionaries, sentencepiece model, valid/test splits and raw references: the student is
    validated and tested on what the teacher was."""
    for path in glob.glob(os.path.join(data, "*")):
        name = os.path.basename(path)
        if name.startswith("train.") or name == "preprocess.log" or os.path.exists(os.path.join(staging, name)):
            continue
        if os.path.isdir(path):
            shutil.copytree(path, os.path.join(staging, name), ignore=shutil.ignore_patterns("train.*"))
        else:
            shutil.copy(path, staging)


def distill_data(teacher: str, data: str, out: str, beam: int = 5, batch_size: int = 64, shard_size: int = 1000,
                 max_len_a: float = 1.5, max_len_b: int = 10) -> dict:
    """Write OUT: DATA with the training targets replaced by the teacher's translations. Returns a report."""
    from tqdm import tqdm

    if not os.path.isdir(data):
        raise ConfigError(f"--data {data}: no such directory")
    for flag, value in (("--beam", beam), ("--batch-size", batch_size), ("--shard-size", shard_size)):
        if value < 1:
            raise ConfigError(f"{flag} must be a positive integer, got {value}")
    source, target = language_pair(data)
    task = translation_task(data, source, target)
    if os.path.isdir(teacher):
        translate = ct2_translate(teacher, data, task, beam, batch_size, max_len_a, max_len_b)
    elif os.path.isfile(teacher):
        translate = fairseq_translate(teacher, task, beam, batch_size, max_len_a, max_len_b)
    else:
        raise ConfigError(f"--teacher {teacher}: no such checkpoint file or CTranslate2 directory")
    task.load_dataset("train")
    sources = task.dataset("train").src
    n = len(sources)
    staging = check_out(out, Settings(os.path.abspath(teacher), beam, shard_size, max_len_a, max_len_b, n))

    shards = [(start, min(start + shard_size, n)) for start in range(0, n, shard_size)]
    shard_path = [os.path.join(staging, "shards", f"{i:06d}.{target}") for i in range(len(shards))]
    done = sum(end - start for (start, end), path in zip(shards, shard_path) if os.path.isfile(path))
    with tqdm(total=n, initial=done, unit="sent", desc="distill-data", smoothing=0.1) as bar:
        for (start, end), path in zip(shards, shard_path):
            if os.path.isfile(path):
                continue
            hypotheses = translate([sources[i] for i in range(start, end)])
            if len(hypotheses) != end - start:
                raise RuntimeError(f"the teacher returned {len(hypotheses)} translations for {end - start} sentences")
            write_lines(path, hypotheses)
            bar.update(end - start)

    os.makedirs(os.path.join(staging, "text"), exist_ok=True)
    write_lines(os.path.join(staging, "text", f"train.{source}"),
                [task.source_dictionary.string(sources[i]).split() for i in range(n)])
    with open(os.path.join(staging, "text", f"train.{target}"), "w", encoding="utf-8") as merged:
        for path in shard_path:
            with open(path, encoding="utf-8") as f:
                shutil.copyfileobj(f, merged)
    for lang in (source, target):
        lines = count_lines(os.path.join(staging, "text", f"train.{lang}"))
        if lines != n:
            raise RuntimeError(f"train.{lang} of the distilled data has {lines} lines for {n} source sentences")
    binarize(staging, data, source, target)
    copy_the_rest(data, staging)
    shutil.rmtree(os.path.join(staging, "shards"))
    os.rename(staging, out)
    return {"out": out, "sentences": n, "teacher": teacher, "beam": beam}
