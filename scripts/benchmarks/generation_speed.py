"""Generation speed and BLEU of several contenders in one run, alternating them so machine
noise hits all alike: each translation goes through scripts/eval_bleu.sh (beam 5, batches of
64 sentences, CPU): the stock fairseq-generate for a checkpoint, CTranslate2 for an exported
directory; its speed is the runtime's own translation timer (model loading excluded). Shared by
int8_inference.py, structured_speed.py, structured_race.py and deploy_speed.py."""
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[2]
INT8 = ["--model-overrides", "{'int8_inference': True}"]


def translate(ckpt: Path, data: Path, extra: Sequence[str], threads: Optional[int] = None) -> Tuple[float, float]:
    """(BLEU, sentences/s) of one eval_bleu.sh run, on `threads` threads (default: the caller's OMP_NUM_THREADS)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)} if threads else None
    result = subprocess.run(["bash", str(ROOT / "scripts/eval_bleu.sh"), str(ckpt), str(data), "--json", "--", *extra],
                            capture_output=True, text=True, env=env)
    if result.returncode:
        sys.exit(f"error: eval_bleu.sh failed: {result.stderr.strip().splitlines()[-1:]}")
    scored = json.loads(result.stdout)
    return scored["bleu"], scored["sentences_per_s"]


def race(contenders: Dict[str, Tuple[Path, List[str]]], data: Path, repeats: int) -> Dict[str, Tuple[float, float]]:
    """{name: (BLEU, median sentences/s)}: every contender once per repeat, in turn."""
    speeds: Dict[str, List[float]] = {name: [] for name in contenders}
    bleus: Dict[str, float] = {}
    for _ in range(repeats):
        for name, (ckpt, extra) in contenders.items():
            bleus[name], speed = translate(ckpt, data, extra)
            speeds[name].append(speed)
    for name, values in speeds.items():
        print(f"{name}: {statistics.median(values):.2f} sentences/s (runs: {values}), test BLEU {bleus[name]:.2f}")
    return {name: (bleus[name], statistics.median(speeds[name])) for name in contenders}
