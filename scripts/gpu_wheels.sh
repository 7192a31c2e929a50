#!/usr/bin/env bash
# Fetch, here (pip reaches PyPI), what the offline GPU machine lacks to run fairseq and
# fairseq_compress under its own Python 3.12 and CUDA torch (see scripts/gpu_check.sh):
# the fairseq-fixed sdist, built there against that torch, and cp312 / pure-Python wheels
# of its missing dependencies, pinned from constraints.txt. Everything lands in the ignored
# folder .gpu_wheels/, which the device call carries. Idempotent: files already there stay.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEST=$ROOT/.gpu_wheels
# The project venv: the sdist's metadata step imports torch and cython. setup.sh makes it
# (or returns at once when it is up to date).
[[ -n ${PYTHON:-} ]] || bash "$ROOT/scripts/setup.sh" >&2
PY=${PYTHON:-$ROOT/.venv/bin/python}
pip=("$PY" -m pip --disable-pip-version-check -q)
mkdir -p "$DEST"

pin() { grep -i -m1 "^$1==" "$ROOT/constraints.txt" || echo "$1"; }  # NAME==VERSION, or NAME if unpinned
have() { compgen -G "$DEST/${1//-/_}-*" >/dev/null; }                 # file names use underscores

# --no-build-isolation: an isolated metadata build would fetch a CUDA torch (GBs) just to read it.
have fairseq-fixed ||
  "${pip[@]}" download --no-deps --no-binary :all: --no-build-isolation -d "$DEST" "$(pin fairseq-fixed)"

# What the GPU image lacks (KINDS.md's package list): hydra/omegaconf/bitarray for fairseq,
# cffi(+pycparser) because fairseq-fixed declares it. The rest of its needs are in the image.
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
for name in hydra-core omegaconf bitarray cffi pycparser; do
  have "$name" || "${pip[@]}" download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d "$DEST" "$(pin "$name")"
done

# antlr4-python3-runtime 4.9.3 (hydra/omegaconf need 4.9.*) ships only an sdist; it is pure
# Python, so build its py3-none-any wheel here and nothing needs building there.
if ! have antlr4-python3-runtime; then
  tmp=$(mktemp -d)
  "${pip[@]}" download --no-deps --no-binary :all: -d "$tmp" "$(pin antlr4-python3-runtime)"
  "${pip[@]}" wheel --no-deps --no-build-isolation -w "$DEST" "$tmp"/*
  rm -rf "$tmp"
fi

ls -l "$DEST"
du -sh "$DEST"
