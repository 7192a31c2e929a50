#!/usr/bin/env bash
# The GPU checks in one command, for the lent (offline) GPU machine, run from the repo root:
#   device run, carry [".gpu_wheels"] (made here by scripts/gpu_wheels.sh), timeout_s 600:
#     bash scripts/gpu_check.sh                 every stage, in order
#     bash scripts/gpu_check.sh --stage tests   one stage alone (a rerun: the venv is reused)
#   here, with the GPU image's versions (docs/mixed_precision.md says how to make that python):
#     GPU_CHECK_PYTHON=/tmp/r312/base/bin/python bash scripts/gpu_check.sh --rehearse
# Stages, each under its own time cap (seconds; 570 in all, inside the device's 600 s call;
# GPU_CHECK_CAP_NAME=SECONDS changes one):
#   cuda        30  python3's torch sees a GPU (first and alone: without it nothing below means anything)
#   env        120  a venv layered on python3 with the carried wheels installed (nothing is compiled),
#                   reused as it is when it already imports fairseq's compiled parts and the plugin
#   tests      300  pytest -m gpu
#   throughput 120  the --fp16 training-throughput benchmark
# Each stage ends with one summary line, and the run with one line per stage, so the tail of the
# output alone tells what passed. All of it goes to docs/results/gpu_check.txt (appended to with
# --stage) and $OUT/gpu_check.txt as it comes, so a killed run still reports.
# --rehearse (no GPU): skips the cuda stage, runs env and tests as there (the gpu tests collect,
# then skip; their CPU twins in test_mixed_precision.py run), and the benchmark on CPU for 2
# steps; the log is docs/results/gpu_check_rehearsal.txt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SELF=$PWD/scripts/gpu_check.sh
STAGES=(cuda env tests throughput)
declare -A CAP=([cuda]=30 [env]=120 [tests]=300 [throughput]=120)
for name in "${STAGES[@]}"; do  # GPU_CHECK_CAP_TESTS=500: a stage rerun alone may take more of the call
  override=GPU_CHECK_CAP_${name^^}
  CAP[$name]=${!override:-${CAP[$name]}}
done

export ROOT=$PWD
export BASE_PYTHON=${GPU_CHECK_PYTHON:-python3}  # the image's python3 holds its CUDA torch
export VENV=${GPU_VENV:-/tmp/gpuvenv}  # exported: scripts/lib/common.sh runs $VENV/bin/python
export PY=$VENV/bin/python
export PYTHONUNBUFFERED=1 PYTHONPATH=$ROOT  # fairseq_compress straight from the checkout
MARKER=_gpu_check_base.pth  # in a venv this script made (and may remake)

stage_cuda() {
  nvidia-smi -L || echo "gpu_check: nvidia-smi -L failed"
  "$BASE_PYTHON" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__,
    "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), torch.cuda.get_device_name(0))'
}

env_ready() {
  "$PY" -c 'import fairseq.libbleu, fairseq.data.data_utils_fast, fairseq.data.token_block_utils_fast
import fairseq_compress' 2>/dev/null && [[ -x $VENV/bin/fairseq-train && -x $VENV/bin/fairseq-compress ]]
}

make_venv() {
  # A venv of python3 that sees python3's own packages (torch, numpy, pytest, ...) through a .pth,
  # and holds the fairseq CLIs in its bin/ (the tests put that first on PATH). Not
  # --system-site-packages: python3 is itself a venv (/opt/torch/.venv), and that flag would show
  # the base interpreter's packages, not its. --without-pip: pip comes via the .pth too.
  "$BASE_PYTHON" -m venv --without-pip --clear "$VENV"
  local site
  site=$("$PY" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
  "$BASE_PYTHON" -c 'import site; print("import site; " + "; ".join(f"site.addsitedir({p!r})" for p in site.getsitepackages()))' \
    >"$site/$MARKER"
}

stage_env() {
  if env_ready; then
    echo "gpu_check: reusing $VENV, which imports fairseq and fairseq_compress"
  else
    # someone's folder is never replaced, whatever else is missing
    if [[ -e $VENV ]] && ! compgen -G "$VENV/lib/python*/site-packages/$MARKER" >/dev/null; then
      echo "gpu_check: $VENV exists, was not made by this script and does not import fairseq: set GPU_VENV"
      return 1
    fi
    compgen -G ".gpu_wheels/fairseq_fixed-*-cp312-*.whl" >/dev/null ||
      { echo "gpu_check: .gpu_wheels/ has no cp312 fairseq wheel: run scripts/gpu_wheels.sh here and carry .gpu_wheels"; return 1; }
    make_venv
    # No index there; --no-deps: the rest of fairseq's needs are in the image; wheels only, so
    # nothing is compiled. The plugin editable, as scripts/setup.sh installs it (the tests call
    # fairseq-compress).
    local pip=("$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-cache-dir --no-compile)
    "${pip[@]}" .gpu_wheels/*.whl
    "${pip[@]}" --no-build-isolation -e "$ROOT"
    env_ready || { echo "gpu_check: the venv does not import fairseq's compiled parts and the plugin"; return 1; }
  fi
  "$PY" -c 'import sys, fairseq, numpy, torch; print("python", sys.version.split()[0], "fairseq", fairseq.__version__,
    "numpy", numpy.__version__, "torch", torch.__version__)'
}

need_env() {
  env_ready || { echo "gpu_check: $VENV does not import fairseq and fairseq_compress: run --stage env first"; return 1; }
}

stage_tests() {
  need_env
  # 4 workers: the tests are fairseq runs, mostly waiting on process start and CPU-side data
  # prep, and one H200 holds them all. Exit 5 (no test selected) fails: tests/test_gpu.py has some.
  local pytest=("$PY" -m pytest -q -n 4 --durations 15 -p no:cacheprovider)
  "${pytest[@]}" -m gpu tests
  if [[ -n ${GPU_CHECK_REHEARSE:-} ]]; then
    # The gpu tests skip without CUDA; their CPU twins run what comes before it there (the
    # corpus fixtures, fairseq-train under --fp16) with the image's versions.
    "${pytest[@]}" tests/test_mixed_precision.py -k cpu_fp16
  fi
}

stage_throughput() {
  need_env
  if [[ -n ${GPU_CHECK_REHEARSE:-} ]]; then  # up to the first CUDA call: fairseq builds and trains on CPU
    "$PY" -m fairseq_compress.benchmarks.train_throughput --device cpu --steps 2 --warmup 1 --batch-scale 0.125 \
      --threads 1 --csv "${TMPDIR:-/tmp}/gpu_check_train_throughput.csv"
  else
    "$PY" -m fairseq_compress.benchmarks.train_throughput --device cuda --fp16 --steps 20 --warmup 5
    [[ -z ${OUT:-} ]] || cp docs/results/train_throughput.csv "$OUT/"
  fi
}

if [[ ${1:-} == --in-stage ]]; then  # one stage, in its own process so that `timeout` can cap it
  case $2 in
    cuda) stage_cuda ;;
    env) stage_env ;;
    tests) stage_tests ;;
    throughput) stage_throughput ;;
  esac
  exit
fi

usage() {
  echo "gpu_check: $1 (usage: gpu_check.sh [--stage $(IFS='|'; echo "${STAGES[*]}")] [--rehearse])" >&2
  exit 2
}
only="" rehearse=""
while (($#)); do
  case $1 in
    --stage)
      if (($# < 2)) || [[ -z ${CAP[$2]+set} ]]; then usage "--stage takes a stage name"; fi
      only=$2
      shift 2 ;;
    --rehearse) rehearse=1; shift ;;
    *) usage "unknown argument $1" ;;
  esac
done

if [[ -n $rehearse ]]; then
  export GPU_CHECK_REHEARSE=1
  LOG=${GPU_CHECK_LOG:-$ROOT/docs/results/gpu_check_rehearsal.txt}
else
  # First and alone, before any log or venv: without a CUDA torch nothing below means anything.
  "$BASE_PYTHON" -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null ||
    { echo "gpu_check: CUDA is missing ($BASE_PYTHON has no torch that sees a GPU); run this on the GPU machine" >&2; exit 1; }
  LOG=${GPU_CHECK_LOG:-$ROOT/docs/results/gpu_check.txt}
fi

run_stage() {  # run_stage NAME: the stage under its cap; prints and records its one-line summary
  local name=$1 start=$SECONDS rc=0 result
  echo "== $name (cap ${CAP[$name]} s)"
  timeout --kill-after 10 "${CAP[$name]}" bash "$SELF" --in-stage "$name" || rc=$?
  case $rc in
    0) result=passed ;;
    124 | 137) result="TIMED OUT at its ${CAP[$name]} s cap" ;;
    *) result="FAILED (exit $rc)" ;;
  esac
  SUMMARY+=("gpu_check: $name: $result in $((SECONDS - start)) s")
  echo "${SUMMARY[-1]}"
  return "$rc"
}

main() {
  echo "gpu_check $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)${rehearse:+ (rehearsal, no CUDA)}"
  SUMMARY=()
  local name failed=0 broken=""
  for name in "${STAGES[@]}"; do
    if [[ -n $only && $name != "$only" ]]; then
      continue
    elif [[ $name == cuda && -n $rehearse ]]; then
      SUMMARY+=("gpu_check: cuda: skipped (rehearsal)")
    elif [[ -n $broken ]]; then  # nothing after a failed cuda or env stage can run
      SUMMARY+=("gpu_check: $name: skipped ($broken failed)")
      failed=1
    elif ! run_stage "$name"; then
      failed=1
      [[ $name == tests || $name == throughput ]] || broken=$name
    fi
  done
  echo "== summary"
  printf '%s\n' "${SUMMARY[@]}"
  echo "gpu_check: $( ((failed)) && echo FAILED || echo "all stages passed")${only:+ (--stage $only)}"
  return "$failed"
}

# main's output goes to the log (and to $OUT as it comes); set +e around the pipeline only: a
# failing stage must still leave its log behind.
mkdir -p "$(dirname "$LOG")"
[[ -n $only ]] || : >"$LOG"
start=$SECONDS
set +e
main 2>&1 | tee -a "$LOG" ${OUT:+"$OUT/gpu_check.txt"}
rc=${PIPESTATUS[0]}
set -e
echo "gpu_check: exit $rc after $((SECONDS - start)) s" | tee -a "$LOG" ${OUT:+"$OUT/gpu_check.txt"}
exit "$rc"
