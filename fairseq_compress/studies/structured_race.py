"""Sentences/s of every contender of the structured study (structured.py) on one thread and on two, in
one run: each repeat runs every contender in turn, one thread then two, so machine noise hits all
alike. Task mt translates (translation_race.translate: eval_bleu.sh, the stock fairseq-generate,
beam 5, its own timer); task cls classifies (eval_cls.sh --speed: the stock fairseq-validate with
its forward passes timed, dev and test splits, or a random sample of `sentences` of each).
fairseq_compress/benchmarks/structured_race.py is its command line."""
import json
import statistics
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .stages import ROOT, threads_env, tool_env
from .translation_race import INT8, translate

THREADS = (1, 2)


def classify(ckpt: Path, data: Path, extra: Sequence[str], threads: int,
             sentences: Optional[int] = None) -> Tuple[float, float]:
    """(test accuracy, sentences/s) of one eval_cls.sh --speed run on `threads` threads, over
    `sentences` of each split when given."""
    sample = ["--speed-sentences", str(sentences)] if sentences else []
    result = subprocess.run(["bash", str(ROOT / "scripts/eval_cls.sh"), str(ckpt), str(data), "--speed", *sample, "--", *extra],
                            capture_output=True, text=True, env={**tool_env(), **threads_env(threads)})
    if result.returncode:
        sys.exit(f"error: eval_cls.sh failed: {result.stderr.strip().splitlines()[-1:]}")
    scores = json.loads(result.stdout)
    return scores["accuracy"], scores["sentences_per_s"]


RUNNERS = {"mt": translate, "cls": classify}


def precision_args(precision: str) -> List[str]:
    """fairseq-generate / fairseq-validate arguments of a precision: int8 through --model-overrides."""
    return INT8 if precision == "int8" else []


def speeds(task: str, contenders: Sequence[Tuple[str, Path, str]], data: Path, repeats: int,
           sentences: Optional[int] = None) -> Dict[str, Dict[str, float]]:
    """{NAME: {"sent_s_1": median, "sent_s_2": median}} of the contenders (NAME, CHECKPOINT, fp32 | int8)."""
    runner = RUNNERS[task]
    if sentences:
        runner = partial(runner, sentences=sentences)
    measured: Dict[str, Dict[int, List[float]]] = {name: {t: [] for t in THREADS} for name, _, _ in contenders}
    for _ in range(repeats):
        for name, ckpt, precision in contenders:
            for threads in THREADS:
                measured[name][threads].append(runner(ckpt, data, precision_args(precision), threads)[1])
    return {name: {f"sent_s_{t}": round(statistics.median(v), 2) for t, v in by_threads.items()}
            for name, by_threads in measured.items()}


def race_once(out: Path, task: str, contenders: Sequence[Tuple[str, Path, str]], data: Path, repeats: int,
              sentences: Optional[int] = None) -> dict:
    """speeds() written to `out` as JSON, unless `out` exists; its content."""
    if not out.exists():
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(speeds(task, contenders, data, repeats, sentences), indent=1))
        tmp.replace(out)
    return json.loads(out.read_text())
