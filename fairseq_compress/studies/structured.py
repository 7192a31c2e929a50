"""Structured compression (docs/structured.md): what removing heads, FFN neurons and layers buys in speed
and costs in quality, whether DropHead makes heads removable, and the Train-Large question at equal
speed; on translation (task mt: BLEU, fairseq-generate's sentences/s) or sentence classification
(task cls: accuracy, the classifier's sentences/s).

Stages, in order; each one's result file is its stamp, so a rerun reuses what is done:
  1. models: ``models.arch`` without DropHead and with each DropHead p (``models.drophead_p``, V
     schedule), every seed, and ``models.small_arch`` with as much training time. mt: trained from
     scratch on ``data`` (scripts/train_mt.sh) for ``models.updates`` updates, the small model for as
     many minutes as the first run took. cls: both archs pretrained as masked LMs at once for
     ``pretrain.minutes`` each (scripts/pretrain_mlm.sh; or ``pretrain.large`` / ``pretrain.small``),
     then fine-tuned on the cls task for ``models.updates`` updates (scripts/finetune_cls.sh);
  2. speed vs fraction kept: from the first model (no DropHead, first seed), a ``finetune.updates``
     fine-tune with each mask of ``masks`` (the pruning task, gradual schedule), shrunk
     (``fairseq-compress shrink``) unless unstructured; iPQ (``fairseq-compress ipq``); the
     reference: the same fine-tune without a mask. The metric of each, fp32 and int8 (mt: BLEU on
     the first ``bleu_sentences`` test pairs, scripts/eval_bleu.sh; cls: test accuracy,
     scripts/eval_cls.sh), then sentences/s on one thread and two, every contender in turn per
     repeat (structured_race.py; mt: the first ``speed.sentences`` test pairs; cls: a sample of
     ``speed.sentences`` of dev and of test);
  3. DropHead makes heads removable: every model of 1 shrunk to each of ``heads_keep`` of its heads,
     scored without fine-tuning and after ``finetune.head_updates`` of it;
  4. equal speed, and the results (structured_results.py): RESULTS/structured_{speed,heads}.{csv,png}
     and structured_equal_speed.csv (cls: structured_cls_*), and their tables printed.

    .venv/bin/python -m fairseq_compress.studies.structured [--config FILE] [task=cls] [key=value ...]

Recipes and budgets: configs/structured_mt.yaml and configs/structured_cls.yaml (every value: the schema has none),
the one of ``task`` unless --config names another; configs/structured_{mt,cls}_smoke.yaml: toy runs.
"""
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

from omegaconf import MISSING

from .stages import ROOT, finetune_cls, in_parallel, number, run, run_once, tool_env
from .structured_race import precision_args, race_once
from .structured_results import FAMILIES, TASKS, Contender, family, write_results
from .study_config import (IPQ, RESTORE, check_translation_data, ipq_command, ipq_stages, load_task_config,
                           study_paths)
from .fairseq_log import records
from .train_stats import seconds_per_update, wall_per_update


@dataclass
class Models:
    """Stage 1, and its training recipe: the options of scripts/train_mt.sh (mt) or finetune_cls.sh
    (cls) that the study passes over the pipeline's recipe (fairseq_compress/config/); null: not passed."""
    arch: str = MISSING
    small_arch: str = MISSING  # trained as long: mt as many minutes, cls as many pretraining minutes
    updates: Optional[int] = MISSING  # null (task cls only): the cls recipe's, the classification regime
    lr: Optional[float] = None
    warmup: Optional[int] = None  # train_mt.sh only (finetune_cls.sh warms up 6 % of its updates)
    max_tokens: Optional[int] = None  # train_mt.sh only
    batch_size: Optional[int] = None  # finetune_cls.sh only
    drophead_p: List[float] = MISSING  # a model per p, beside the one without
    drophead_schedule: str = MISSING


@dataclass
class Finetune:
    """Every fine-tune of stages 2 and 3, and its recipe (the same pipeline options as Models')."""
    updates: int = MISSING  # stage 2's; the masks reach their sparsity at half of it
    head_updates: int = MISSING  # stage 3's
    lr: Optional[float] = None
    warmup: Optional[int] = None
    max_tokens: Optional[int] = None
    batch_size: Optional[int] = None


@dataclass
class Mask:
    """A stage 2 contender: --prune-granularity and --prune-sparsity (the fraction removed)."""
    name: str = MISSING  # FAMILY + percent removed (heads50, ffn25, layers33, heads_ffn50, ...): its CSV row
    granularity: str = MISSING  # head, neuron, layer, a comma list of them, or weight (unstructured: not shrunk)
    sparsity: float = MISSING


@dataclass
class Speed:
    sentences: int = MISSING  # mt: the first N test pairs; cls: a sample of N of dev and of test
    repeats: int = MISSING


@dataclass
class Pretrain:
    """Task cls: the masked LMs of models.arch and models.small_arch (scripts/pretrain_mlm.sh), at once."""
    data: str = MISSING  # scripts/prepare_mlm.sh's English text (prepared from RAW/en when raw is set)
    minutes: float = MISSING
    max_tokens: int = MISSING
    warmup: int = MISSING
    large: Optional[str] = None  # a pretrained checkpoint of models.arch instead
    small: Optional[str] = None  # and of models.small_arch


@dataclass
class StudyConfig:
    task: str = MISSING
    data: str = MISSING  # mt: a data-bin of scripts/prepare_mt.sh; cls: the task of scripts/prepare_glue.sh
    raw: Optional[str] = None  # cls: the shipped corpus, whose en/ and cls/ are prepared into pretrain.data and data
    out: str = MISSING
    results: str = MISSING
    jobs: int = MISSING
    seeds: List[int] = MISSING
    models: Models = field(default_factory=Models)
    finetune: Finetune = field(default_factory=Finetune)
    masks: List[Mask] = MISSING
    ipq: IPQ = field(default_factory=IPQ)
    heads_keep: List[float] = MISSING
    speed: Speed = field(default_factory=Speed)
    bleu_sentences: Optional[int] = MISSING  # mt only
    pretrain: Optional[Pretrain] = None  # cls only


def check_config(config: StudyConfig) -> None:
    """Bad values stop the study before any work, with one line."""
    mt = config.task == "mt"
    if not config.seeds:
        sys.exit("error: seeds: give at least one seed")
    updates = config.models.updates if mt or config.models.updates is not None else 1
    for key, value in (("jobs", config.jobs), ("models.updates", updates),
                       ("finetune.updates", config.finetune.updates), ("finetune.head_updates", config.finetune.head_updates),
                       ("ipq.finetune_updates", config.ipq.finetune_updates), ("ipq.n_iter", config.ipq.n_iter),
                       ("speed.sentences", config.speed.sentences), ("speed.repeats", config.speed.repeats),
                       ("bleu_sentences", config.bleu_sentences if mt else 1)):
        if value is None or value < 1:
            sys.exit(f"error: {key} must be a positive integer, got {value}")
    check_task_blocks(config)
    for name, recipe in (("models", config.models), ("finetune", config.finetune)):
        for key in ("warmup", "max_tokens", "batch_size"):
            takes = (key != "batch_size") == mt  # train_mt.sh takes --warmup and --max-tokens, finetune_cls.sh --batch-size
            if getattr(recipe, key) is not None and not takes:
                sys.exit(f"error: {name}.{key} must be null for task {config.task} "
                         f"(train_mt.sh takes warmup and max_tokens, finetune_cls.sh batch_size)")
    check_archs(config)
    if not all(0 < p < 1 for p in config.models.drophead_p) or not all(0 < k < 1 for k in config.heads_keep):
        sys.exit("error: models.drophead_p and heads_keep must hold fractions in (0, 1)")
    from ..modules.scheduled_drophead import SCHEDULES

    if config.models.drophead_schedule not in SCHEDULES:
        sys.exit(f"error: models.drophead_schedule must be one of {', '.join(SCHEDULES)}, "
                 f"got '{config.models.drophead_schedule}'")
    check_masks(config.masks)
    ipq_stages(config.ipq)
    check_data(config)


def check_task_blocks(config: StudyConfig) -> None:
    """The keys of the other task are not set (before the missing values: pretrain.large=X on task mt leaves the
    rest of the pretrain block missing)."""
    mt = config.task == "mt"
    if mt and (config.pretrain is not None or config.raw is not None):
        sys.exit("error: pretrain and raw are for task cls (translation trains from scratch on data)")
    if not mt and config.bleu_sentences is not None:
        sys.exit("error: bleu_sentences is for task mt (cls scores its whole dev and test splits): null it")
    if not mt and config.pretrain is None:
        sys.exit("error: task cls needs a pretrain block (configs/structured_cls.yaml)")


def check_archs(config: StudyConfig) -> None:
    from fairseq.models import ARCH_MODEL_REGISTRY

    prefix = "transformer_" if config.task == "mt" else "roberta_"
    for key in ("arch", "small_arch"):
        arch = getattr(config.models, key)
        if not arch.startswith(prefix) or arch not in ARCH_MODEL_REGISTRY:
            sys.exit(f"error: models.{key}={arch} is not a plugin arch of task {config.task} "
                     f"(mt: transformer_l*_h*, transformer_e*d*_h*; cls: roberta_l*_h*)")


def check_masks(masks: Sequence[Mask]) -> None:
    fixed = {"dense", "dense_ft", "ipq", "small"}  # the contenders every run has
    granularities = {"head", "neuron", "layer"}
    for mask in masks:
        parts = set(mask.granularity.split(","))
        if family(mask.name) in ("", *(FAMILIES[f] for f in fixed)) or mask.name.endswith("_int8"):
            sys.exit(f"error: masks: name '{mask.name}' must be FAMILY then the percent removed, a family of "
                     f"{', '.join(sorted(set(FAMILIES) - fixed))} (e.g. heads50)")
        if not (parts <= granularities or parts == {"weight"}) or not 0 < mask.sparsity < 1:
            sys.exit(f"error: masks: {mask.name}: granularity must be weight or a comma list of head, neuron, layer, "
                     f"sparsity a fraction in (0, 1); got {mask.granularity}, {mask.sparsity}")
    names = [mask.name for mask in masks]
    if len(set(names)) != len(names):
        sys.exit(f"error: masks: every name once, got {', '.join(names)}")


def check_data(config: StudyConfig) -> None:
    data = Path(config.data)
    if config.task == "mt":
        check_translation_data(config.data)
        return
    pretrain = config.pretrain
    for key in ("large", "small"):
        if getattr(pretrain, key) is not None and not Path(getattr(pretrain, key)).is_file():
            sys.exit(f"error: pretrain.{key}: no such checkpoint: {getattr(pretrain, key)}")
    if config.raw is not None:
        if not (Path(config.raw) / "cls").is_dir() or not (Path(config.raw) / "en").is_dir():
            sys.exit(f"error: raw={config.raw} holds no en/ and cls/ (the shipped corpus is data-bin/raw)")
    elif not (data / "label/dict.txt").is_file() or not (Path(pretrain.data) / "dict.txt").is_file():
        sys.exit(f"error: with raw null, data={data} must be a task of scripts/prepare_glue.sh and "
                 f"pretrain.data={pretrain.data} a corpus of scripts/prepare_mlm.sh")


def training_seconds_per_update(log: str) -> Optional[float]:
    """fairseq's train_wall per update of a fairseq-train log after its first logging interval (the start-up);
    a run shorter than two intervals: its epochs' train_wall over its updates, start-up included."""
    rate = seconds_per_update(log)
    epochs = records(log, "train")
    if rate is None and epochs and epochs[-1].get("num_updates"):
        rate = wall_per_update([epoch["train_wall"] for epoch in epochs], epochs[-1]["num_updates"])
    return rate


def recipe_args(recipe) -> List[str]:
    """The pipeline options of a Models or Finetune recipe (train_mt.sh or finetune_cls.sh)."""
    options = (("--lr", recipe.lr), ("--warmup", recipe.warmup), ("--max-tokens", recipe.max_tokens),
               ("--batch-size", recipe.batch_size))
    return [arg for flag, value in options if value is not None for arg in (flag, number(value))]


def mask_args(mask: Mask, updates: int) -> List[str]:
    """The pruning task's options of a stage 2 fine-tune: the mask rises to its sparsity by half the fine-tune."""
    return ["--prune-granularity", mask.granularity, "--prune-sparsity", number(mask.sparsity), "--prune-schedule",
            "gradual", "--prune-end-update", str(updates // 2), "--prune-frequency", str(max(updates // 10, 1)),
            "--prune-scope", "layer"]


class Translation:
    """Task mt: models trained from scratch on a prepare_mt.sh data-bin; BLEU on the first bleu_sentences
    test pairs, speed on the first speed.sentences (test subsets binarized under OUT)."""

    def __init__(self, config: StudyConfig, data: Path, out: Path):
        self.config, self.data, self.out = config, data, out
        self.score_data, self.speed_data = out / f"test{config.bleu_sentences}", out / f"test{config.speed.sentences}"
        self.race_sentences = None  # speed_data is the sample

    def prepare(self) -> None:
        """The test subsets of scoring and timing (the models train from scratch)."""
        for n in (self.config.bleu_sentences, self.config.speed.sentences):
            self.test_subset(n)

    def test_subset(self, n: int) -> Path:
        """OUT/testN: the first N test pairs of data, binarized with its dictionaries."""
        subset, data = self.out / f"test{n}", self.data
        if subset.is_dir():
            return subset
        tmp = self.out / f"test{n}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "raw").mkdir(parents=True)
        for dictionary in data.glob("dict.*.txt"):
            lang = dictionary.name[len("dict."):-len(".txt")]
            with open(data / "raw" / f"test.{lang}") as f:
                (tmp / "raw" / f"test.{lang}").write_text("".join(line for _, line in zip(range(n), f)))
            with open(tmp / "raw" / f"test.{lang}") as text, open(tmp / f"test.sp.{lang}", "w") as pieces:
                subprocess.run([sys.executable, ROOT / "fairseq_compress/pipelines/spm.py", "encode", "--model", data / "spm.model"],
                               stdin=text, stdout=pieces, check=True)
        src, tgt = next(data.glob("test.*-*.*.bin")).name.split(".")[1].split("-")
        with open(tmp / "preprocess.log", "w") as log:
            done = subprocess.run(["fairseq-preprocess", "--source-lang", src, "--target-lang", tgt, "--testpref",
                                   tmp / "test.sp", "--srcdict", data / f"dict.{src}.txt", "--tgtdict",
                                   data / f"dict.{tgt}.txt", "--destdir", tmp, "--workers", "1"],
                                  stdout=log, stderr=subprocess.STDOUT, env=tool_env())
        if done.returncode:
            sys.exit(f"error: fairseq-preprocess of a test subset failed ({tmp / 'preprocess.log'})")
        shutil.copy(data / "spm.model", tmp)
        tmp.rename(subset)
        return subset

    def train(self, save: Path, arch: str, budget: List[str], seed: Optional[int], extra: Sequence = (),
              recipe=None) -> None:
        seed_args = ["--seed", seed] if seed is not None else []
        run(["bash", ROOT / "scripts/train_mt.sh", self.data, save, "--arch", arch, *budget, *seed_args,
             *recipe_args(recipe or self.config.models), "--", *extra])

    def train_model(self, save: Path, seed: int, drophead: Sequence[str]) -> None:
        """models.arch with the models' recipe and a config's DropHead flags."""
        self.train(save, self.config.models.arch, ["--max-update", self.config.models.updates], seed, drophead)

    def train_small(self, first: Path) -> None:
        """models.small_arch for as many minutes of training as the first model took (fairseq's train_wall)."""
        rate = training_seconds_per_update((first / "train.log").read_text())
        if rate is None:
            sys.exit(f"error: {first / 'train.log'} holds no training time (no 'train_inner' nor 'train' records)")
        minutes = float(f"{rate:.4f}") * self.config.models.updates / 60
        self.train(self.out / "small", self.config.models.small_arch, ["--minutes", f"{minutes:.2f}"], None)

    def finetune(self, save: Path, checkpoint: Path, updates: int, mask: Sequence[str] = ()) -> None:
        """checkpoint fine-tuned for `updates` with the fine-tuning recipe; with the pruning task's mask if given."""
        task = ["--task", "translation_pruning", *mask] if mask else []
        self.train(save, self.config.models.arch, ["--max-update", updates], None,
                   [*task, "--restore-file", checkpoint, *RESTORE], self.config.finetune)

    def score(self, checkpoint: Path, precision: str, result: Path) -> None:
        """{"bleu": ...} on the score subset into `result`, once."""
        run_once(result, ["bash", ROOT / "scripts/eval_bleu.sh", checkpoint, self.score_data, "--json", "--",
                          *precision_args(precision)])


class Classification:
    """Task cls: both archs pretrained as masked LMs, fine-tuned on a prepare_glue.sh task (finetune_cls.sh,
    the RoBERTa GLUE recipe); test accuracy (eval_cls.sh), speed over a sample of dev and test."""

    def __init__(self, config: StudyConfig, data: Path, out: Path):
        self.config, self.data, self.out = config, data, out
        self.text = Path(config.pretrain.data).resolve()
        self.score_data = self.speed_data = data
        self.race_sentences = config.speed.sentences
        self.large = Path(config.pretrain.large or out / "pretrain/large/checkpoint_last.pt").resolve()
        self.small = Path(config.pretrain.small or out / "pretrain/small/checkpoint_last.pt").resolve()

    def pretrain(self, arch: str, save: Path) -> None:
        pretrain = self.config.pretrain
        run(["bash", ROOT / "scripts/pretrain_mlm.sh", self.text, save, "--arch", arch, "--minutes",
             number(pretrain.minutes), "--max-tokens", pretrain.max_tokens, "--warmup", pretrain.warmup])

    def prepare(self) -> None:
        """The English text and the cls task prepared from raw (both scripts reuse an output of the same
        inputs), and the two masked LMs not given, pretrained at once (one per core: the same training time)."""
        if self.config.raw is not None:
            raw = Path(self.config.raw).resolve()
            run(["bash", ROOT / "scripts/prepare_mlm.sh", raw / "en", self.text])
            run(["bash", ROOT / "scripts/prepare_glue.sh", raw / "cls", self.data, self.text])
        models, pretrain = self.config.models, self.config.pretrain
        in_parallel([lambda a=arch, d=checkpoint.parent: self.pretrain(a, d)
                     for arch, checkpoint, given in ((models.arch, self.large, pretrain.large),
                                                     (models.small_arch, self.small, pretrain.small)) if given is None],
                    self.config.jobs)

    def train(self, save: Path, arch: str, start: Path, updates: int, seed: int, extra: Sequence = (),
              recipe=None) -> None:
        """One fine-tuning with a recipe (the models' unless given)."""
        finetune_cls(self.data, save, arch, updates, seed, start, recipe_args(recipe or self.config.models), extra)

    def train_model(self, save: Path, seed: int, drophead: Sequence[str]) -> None:
        """The large masked LM fine-tuned with the models' recipe and a config's DropHead flags."""
        self.train(save, self.config.models.arch, self.large, self.config.models.updates, seed, drophead)

    def train_small(self, first: Path) -> None:
        """The small masked LM (pretrained as long) fine-tuned for as many updates."""
        self.train(self.out / "small", self.config.models.small_arch, self.small, self.config.models.updates, 1)

    def finetune(self, save: Path, checkpoint: Path, updates: int, mask: Sequence[str] = ()) -> None:
        """checkpoint fine-tuned for `updates` with the fine-tuning recipe, validated and saved at its end only
        (the study scores its last checkpoint: finetune_cls.sh's quarterly dev passes would only cost time);
        with the pruning task's mask if given."""
        task = ["--task", "sentence_prediction_pruning", *mask] if mask else []
        self.train(save, self.config.models.arch, checkpoint, updates, 1,
                   ["--validate-interval-updates", updates, "--save-interval-updates", updates, *task],
                   self.config.finetune)

    def score(self, checkpoint: Path, precision: str, result: Path) -> None:
        """{"accuracy": test, "dev_accuracy": dev} into `result`, once."""
        run_once(result, ["bash", ROOT / "scripts/eval_cls.sh", checkpoint, self.score_data, "--",
                          *precision_args(precision)])


def shrink(checkpoint: Path, out: Path, stamp: Path, heads_keep: Optional[float] = None) -> None:
    """fairseq-compress shrink (of the masked units, or of the heads of lowest norm), its report into `stamp`."""
    keep = ["--heads-keep", number(heads_keep)] if heads_keep is not None else []
    run_once(stamp, ["fairseq-compress", "shrink", "--path", checkpoint, "--out", out, *keep, "--force"])


def drophead_configs(models: Models) -> dict:
    """{directory name under OUT/models: fairseq-train flags}: none, then v_p0.1, v_p0.2 (schedule, p)."""
    configs = {"none": []}
    for p in models.drophead_p:
        configs[f"{models.drophead_schedule}_p{number(p)}"] = ["--drophead-p", number(p), "--drophead-schedule",
                                                                models.drophead_schedule]
    return configs


def drophead_label(name: str, models: Models) -> str:
    return "no DropHead" if name == "none" else \
        f"DropHead p={name.split('_p')[-1]} ({models.drophead_schedule.upper()})"


def main(argv: Optional[List[str]] = None) -> None:
    config = load_task_config(StudyConfig, "structured", list(TASKS), __doc__, argv, "task=cls seeds=[1] speed.repeats=2",
                              check_task_blocks)
    check_config(config)
    data, out = study_paths(config)
    steps = (Translation if config.task == "mt" else Classification)(config, data, out)
    metric = TASKS[config.task].metric
    configs = drophead_configs(config.models)
    runs = [out / "models" / name / f"seed{seed}" for name in configs for seed in config.seeds]

    # 1. the models: (mt: the test subsets; cls: the corpus and the masked LMs, then) every DropHead config and
    #    seed, then the small arch beside stage 2
    steps.prepare()
    in_parallel([lambda d=run_dir: steps.train_model(d, int(d.name[4:]), configs[d.parent.name]) for run_dir in runs],
                config.jobs)
    first = runs[0]
    base = first / "checkpoint_best.pt"

    # 2. the first model fine-tuned with each mask, then shrunk; fine-tuned as long without one; iPQ
    finetuned = out / "finetuned"

    def finetune_masked(mask: Mask) -> None:
        save = finetuned / mask.name
        steps.finetune(save, base, config.finetune.updates, mask_args(mask, config.finetune.updates))
        if mask.granularity != "weight":
            shrink(save / "checkpoint_last.pt", save / "shrunk.pt", save / "shrink.json")

    ipq = ipq_command(config.ipq, base, out / "ipq.pt", data)
    in_parallel([lambda: steps.train_small(first)]
                + [lambda m=mask: finetune_masked(m) for mask in config.masks]
                + [lambda: steps.finetune(finetuned / "dense", base, config.finetune.updates),
                   lambda: run_once(out / "ipq.json", ipq)], config.jobs)

    # every structured contender in fp32 and int8; the unstructured and iPQ ones in fp32
    dense_ft, small = finetuned / "dense/checkpoint_last.pt", out / "small/checkpoint_best.pt"
    contenders = [Contender("dense", base, "fp32"), Contender("dense_int8", base, "int8"),
                  Contender("dense_ft", dense_ft, "fp32"), Contender("dense_ft_int8", dense_ft, "int8")]
    contenders += [Contender(m.name, finetuned / m.name / "checkpoint_last.pt", "fp32")
                   for m in config.masks if m.granularity == "weight"]
    contenders += [Contender("ipq", out / "ipq.pt", "fp32"), Contender("small", small, "fp32"),
                   Contender("small_int8", small, "int8")]
    for mask in config.masks:
        if mask.granularity != "weight":
            shrunk = finetuned / mask.name / "shrunk.pt"
            contenders += [Contender(mask.name, shrunk, "fp32"), Contender(f"{mask.name}_int8", shrunk, "int8")]
    (out / metric).mkdir(exist_ok=True)
    for precision in ("fp32", "int8"):  # a checkpoint's two runs write the same log: not at once
        in_parallel([lambda c=c: steps.score(c.checkpoint, c.precision, out / metric / f"{c.name}.json")
                     for c in contenders if c.precision == precision], config.jobs)
    # speed, alone and alternating: one pass over every contender per repeat, one thread then two
    race_once(out / "speed.json", config.task, [(c.name, c.checkpoint, c.precision) for c in contenders],
              steps.speed_data, config.speed.repeats, steps.race_sentences)

    # 3. every model of 1 shrunk to each fraction of its heads, scored with and without a short fine-tune
    def remove_heads(run_dir: Path) -> None:
        steps.score(run_dir / "checkpoint_best.pt", "fp32", run_dir / "heads_keep1.0.json")
        for keep in config.heads_keep:
            shrunk = run_dir / f"heads_keep{number(keep)}.pt"
            shrink(run_dir / "checkpoint_best.pt", shrunk, run_dir / f"heads_keep{number(keep)}.shrink.json", keep)
            steps.score(shrunk, "fp32", run_dir / f"heads_keep{number(keep)}.json")
            tuned = run_dir / f"heads_keep{number(keep)}_ft"
            steps.finetune(tuned, shrunk, config.finetune.head_updates)
            steps.score(tuned / "checkpoint_last.pt", "fp32", run_dir / f"heads_keep{number(keep)}_ft.json")

    in_parallel([lambda d=run_dir: remove_heads(d) for run_dir in runs], config.jobs)

    # 4. equal speed, the CSVs, the plots and the tables
    print(write_results(out, Path(config.results), TASKS[config.task], config.models.arch, config.models.small_arch,
                        contenders, {name: drophead_label(name, config.models) for name in configs},
                        config.heads_keep))


if __name__ == "__main__":
    main()
