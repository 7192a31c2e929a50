"""What every study needs around its stages: the tools' environment, a stage run once (its result
file is its stamp, so a killed study resumes at the first missing file), up to N stages at a
time, one core each, and its CSV."""
import csv
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[2]  # the checkout: the studies run its scripts/


def tool_env() -> dict:
    """The environment of every step: the venv's tools on PATH (unless the caller's PATH holds
    them already, as the suite's shims do), as scripts/lib/common.sh sets it for the bash steps."""
    venv_bin = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "")
    return os.environ if venv_bin in path.split(os.pathsep) else {**os.environ, "PATH": venv_bin + os.pathsep + path}


def threads_env(threads: int) -> dict:
    """The environment entries that give a step `threads` threads: OpenMP's and MKL's (torch's matrix products),
    so that a caller's MKL_NUM_THREADS cannot leave a timed step on another count."""
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def number(value: float) -> str:
    """A number as a person types it ('12', not '12.0'; '1e-5', not '1e-05'): the text a bash study gave the
    pipelines, so that the run stamps (the commands that trained a save dir) of its finished runs match."""
    if float(value).is_integer():
        return str(int(value))
    mantissa, _, exponent = repr(float(value)).partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa


def run(cmd: Sequence, stdout=subprocess.DEVNULL) -> None:
    """Run one step; a failed step stops the study with the step's name and its last line of stderr."""
    result = subprocess.run([str(c) for c in cmd], stdout=stdout, stderr=subprocess.PIPE, text=True, env=tool_env())
    if result.returncode:
        step = Path(str(cmd[1] if cmd[0] in ("bash", sys.executable) else cmd[0])).name
        last = result.stderr.strip().splitlines()[-1:] or [f"exit status {result.returncode}"]
        sys.exit(f"error: {step} failed: {last[0]}")


def finetune_cls(data: Path, save: Path, arch: str, updates: Optional[int], seed: int,
                 pretrained: Optional[Path] = None, options: Sequence = (), extra: Sequence = ()) -> None:
    """scripts/finetune_cls.sh into `save` (it reuses a finished run and its score), logged with its
    accuracy.json: test and dev accuracy of the checkpoint best on dev. `updates` (None: the recipe's) and
    `options`, the pipeline's own flags (--lr, --batch-size), go over its recipe,
    fairseq_compress/config/cls_finetune.yaml; `extra`: fairseq-train's."""
    run(["bash", ROOT / "scripts/finetune_cls.sh", data, save, "--arch", arch,
         *(["--pretrained", pretrained] if pretrained else []), *(["--max-update", updates] if updates is not None else []),
         "--seed", seed, *options, "--", *extra])
    print(f"{save}: {(Path(save) / 'accuracy.json').read_text().strip()}", file=sys.stderr)


def run_once(out: Path, cmd: Sequence) -> None:
    """Run cmd with its stdout into `out` unless `out` exists; a killed step leaves no `out`."""
    if out.exists():
        return
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w") as f:
        run(cmd, stdout=f)
    tmp.replace(out)


def write_text_once(path: Path, text: str) -> None:
    """`text` into `path` unless it already holds it: a rerun leaves a finished stage's files untouched."""
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def make_once(out: Path, cmd: Sequence) -> None:
    """Run cmd, which writes the file `out`, unless `out` exists."""
    if not out.exists():
        run(cmd)


def in_parallel(stages: Iterable[Callable[[], None]], jobs: int) -> None:
    """Run the stages, `jobs` at a time (each step a process on one core: OMP_NUM_THREADS=1 is
    the caller's to set); the first failure stops the study once the running ones end."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for future in [pool.submit(stage) for stage in stages]:
            future.result()


def write_csv(path: Path, rows: List[Dict]) -> None:
    """The rows (dicts with the same keys, in column order) as a CSV with a header."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
