"""Translation speed and BLEU of several contenders in one run, alternating them so machine noise
hits all alike: each translation goes through scripts/eval_bleu.sh (batches of 64 sentences, CPU):
the stock fairseq-generate for a checkpoint, CTranslate2 for an exported directory; its speed is
the runtime's own translation timer (model loading excluded). The benchmarks of scripts/benchmarks
and the studies share it."""
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .stages import ROOT, threads_env, tool_env

INT8 = ["--model-overrides", "{'int8_inference': True}"]


def translate(ckpt: Path, data: Path, extra: Sequence[str] = (), threads: Optional[int] = None,
              options: Sequence[str] = ()) -> Tuple[float, float]:
    """(BLEU, sentences/s) of one eval_bleu.sh run with `options` (e.g. --beam 1) and fairseq-generate
    arguments `extra`, on `threads` threads (default: the caller's OMP_NUM_THREADS)."""
    env = {**tool_env(), **(threads_env(threads) if threads else {})}
    extra = ["--", *extra] if extra else []
    result = subprocess.run(["bash", str(ROOT / "scripts/eval_bleu.sh"), str(ckpt), str(data), "--json", *options,
                             *extra], capture_output=True, text=True, env=env)
    if result.returncode:
        sys.exit(f"error: eval_bleu.sh failed: {result.stderr.strip().splitlines()[-1:]}")
    scored = json.loads(result.stdout)
    return scored["bleu"], scored["sentences_per_s"]


def race(contenders: Dict[str, Tuple[Path, List[str]]], data: Path, repeats: int,
         options: Sequence[str] = ()) -> Dict[str, Tuple[float, float]]:
    """{name: (BLEU, median sentences/s)}: every contender once per repeat, in turn."""
    speeds: Dict[str, List[float]] = {name: [] for name in contenders}
    bleus: Dict[str, float] = {}
    for _ in range(repeats):
        for name, (ckpt, extra) in contenders.items():
            bleus[name], speed = translate(ckpt, data, extra, options=options)
            speeds[name].append(speed)
    for name, values in speeds.items():
        print(f"{name}: {statistics.median(values):.2f} sentences/s (runs: {values}), test BLEU {bleus[name]:.2f}")
    return {name: (bleus[name], statistics.median(speeds[name])) for name in contenders}
