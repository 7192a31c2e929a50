#!/usr/bin/env bash
# The GPU checks in one command, for the lent (offline) GPU machine, run from the repo root:
#   device run, carry [".gpu_wheels"] (made here by scripts/gpu_wheels.sh): bash scripts/gpu_check.sh
# Builds fairseq-fixed there against the machine's own CUDA torch in a venv layered on its
# python3, runs the tests marked gpu and the --fp16 training-throughput benchmark, and logs
# all of it to docs/results/gpu_check.txt (streamed to $OUT too, so a killed run still reports).
# Budget: under 8 minutes on one H200; each stage prints its time, the test stages have timeouts
# (240 s, 180 s) so that even at worst it ends inside the device's 10-minute limit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# First and alone: without a CUDA torch nothing below means anything.
python3 -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null ||
  { echo "gpu_check: CUDA is missing (python3 has no torch that sees a GPU); run this on the GPU machine" >&2; exit 1; }

ROOT=$PWD
export VENV=${GPU_VENV:-/tmp/gpuvenv}  # exported: scripts/lib/common.sh runs $VENV/bin/python
PY=$VENV/bin/python
LOG=$ROOT/docs/results/gpu_check.txt
export PYTHONUNBUFFERED=1 PYTHONPATH=$ROOT  # fairseq_compress straight from the checkout

timed() {  # timed NAME CMD...: run CMD, say how long it took, return its status
  # Called plainly, errexit ends the run at a failing CMD (setup stages); called as
  # `timed ... || x`, bash ignores errexit inside, and the status is returned (test stages).
  local name=$1 start=$SECONDS
  shift
  echo "== $name"
  "$@"
  local rc=$?
  echo "== $name: $((SECONDS - start)) s$( ((rc)) && echo ", exit $rc")"
  return "$rc"
}

make_venv() {
  # A venv of python3 that sees python3's own packages (torch, cython, pytest, ...) through
  # a .pth, and holds the fairseq CLIs in its bin/ (the tests put that first on PATH). Not
  # --system-site-packages: python3 is itself a venv (/opt/torch/.venv), and that flag would
  # show the base interpreter's packages, not its. --without-pip: pip comes via the .pth too.
  rm -rf "$VENV"
  python3 -m venv --without-pip "$VENV"
  local site
  site=$("$PY" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
  python3 -c 'import site; print("import site; " + "; ".join(f"site.addsitedir({p!r})" for p in site.getsitepackages()))' \
    >"$site/_gpu_check_base.pth"
}

install() {
  ls .gpu_wheels/*.whl .gpu_wheels/fairseq_fixed-*.tar.gz >/dev/null ||
    { echo "gpu_check: .gpu_wheels/ is missing: run scripts/gpu_wheels.sh here and carry .gpu_wheels"; return 1; }
  "$PY" -c 'import os, sysconfig; assert os.path.exists(sysconfig.get_path("include") + "/Python.h")' ||
    { echo "gpu_check: python3 has no Python.h, so fairseq's extensions cannot be built here"; return 1; }
  # No index there; --no-deps: the rest of fairseq's needs are in the image. fairseq is built
  # against this torch (--no-build-isolation); CUDA_HOME unset so its optional CUDA extensions
  # are skipped (fairseq falls back to Python for them), which keeps the build short, as
  # does -g0 (no debug info: a third less compile time for the torch extensions).
  env -u CUDA_HOME CFLAGS=-g0 MAX_JOBS="$(nproc)" "$PY" -m pip install --disable-pip-version-check --no-index --no-deps \
    --no-cache-dir --no-compile --no-build-isolation .gpu_wheels/*.whl .gpu_wheels/fairseq_fixed-*.tar.gz
  # The tests call fairseq-compress too: install the checkout editable, as scripts/setup.sh does.
  "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-build-isolation -e "$ROOT"
  "$PY" -c 'import fairseq, fairseq.libbase, fairseq.data.data_utils_fast, fairseq_compress; print("fairseq", fairseq.__version__)'
  ls "$VENV/bin" | grep -E '^fairseq-' | tr '\n' ' ' && echo
}

gpu_tests() {
  # 4 workers: the tests are fairseq runs, mostly waiting on process start and CPU-side data
  # prep, and one H200 holds them all. pytest exits 5 when no test is marked gpu: say so.
  local rc=0
  timeout 240 "$PY" -m pytest -q -n 4 -m gpu --durations 15 -p no:cacheprovider tests || rc=$?
  if ((rc == 5)); then echo "gpu_check: no tests are marked gpu"; rc=0; fi
  return "$rc"
}

main() {
  set -euo pipefail
  echo "gpu_check $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  nvidia-smi -L || echo "gpu_check: nvidia-smi -L failed"
  python3 -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__,
    "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), torch.cuda.get_device_name(0))'
  timed venv make_venv
  timed install install
  local failed=()
  timed "pytest -m gpu" gpu_tests || failed+=(pytest)
  timed "train_throughput --device cuda --fp16" timeout 180 "$PY" scripts/benchmarks/train_throughput.py \
    --device cuda --fp16 --steps 20 --warmup 5 || failed+=(train_throughput)
  if ((${#failed[@]})); then echo "gpu_check: FAILED: ${failed[*]}"; return 1; fi
  echo "gpu_check: all stages passed"
}

# main's output goes to the log (and to $OUT as it comes); pipefail gives main's status.
# set +e around the pipeline only: a failing stage must still leave its log behind.
mkdir -p "$(dirname "$LOG")"
start=$SECONDS
set +e
main 2>&1 | tee "$LOG" ${OUT:+"$OUT/gpu_check.txt"}
rc=$?
set -e
echo "gpu_check: exit $rc after $((SECONDS - start)) s" | tee -a "$LOG" ${OUT:+"$OUT/gpu_check.txt"}
[[ -z ${OUT:-} ]] || cp docs/results/train_throughput.csv "$OUT/"
exit "$rc"
