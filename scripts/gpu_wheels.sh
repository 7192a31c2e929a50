#!/usr/bin/env bash
# Make, here (pip reaches PyPI), everything the offline GPU machine lacks to run fairseq and
# fairseq_compress under its own Python 3.12, numpy and CUDA torch, so that scripts/gpu_check.sh
# there only installs (no compiler, no torch build):
#   - a cp312 wheel of fairseq-fixed with only the compiled parts the plugin uses
#     (data_utils_fast, token_block_utils_fast: Cython; libbleu: plain C++), without its torch C++
#     extensions (libbase, libnat, alignment_train_cpu_binding), which fairseq imports only in
#     models the plugin never builds, and which took most of a device call to compile;
#   - cp312 / pure-Python wheels of the fairseq dependencies the GPU image lacks, pinned from
#     constraints.txt.
# Everything lands in the ignored folder .gpu_wheels/, which the device call carries; the build
# venv and the unpacked sdist stay in the ignored .gpu_build/. Idempotent: what is there stays.
# Needs a Python 3.12 (pyenv's is found; or PYTHON312=/path/to/python3.12) and the project venv
# (scripts/setup.sh; or PYTHON=/path/to/its/python).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEST=$ROOT/.gpu_wheels
BUILD=$ROOT/.gpu_build
IMAGE_NUMPY=2.5.2  # the GPU image's (docs: .library/device/KINDS.md); numpy 2 extensions run on any 2.x

python312() {
  local candidate
  for candidate in "${PYTHON312:-}" "$(command -v python3.12 || true)" "$HOME"/.pyenv/versions/3.12*/bin/python3.12; do
    if [[ -n $candidate ]] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
  echo "gpu_wheels: no Python 3.12 here (the GPU image's); set PYTHON312=/path/to/python3.12" >&2
  return 1
}

pin() { grep -i -m1 "^$1==" "$ROOT/constraints.txt" || echo "$1"; }  # NAME==VERSION, or NAME if unpinned
have() { compgen -G "$DEST/${1//-/_}-*" >/dev/null; }                 # file names use underscores

mkdir -p "$DEST" "$BUILD"
rm -f "$DEST"/fairseq_fixed-*.tar.gz  # the sdist that gpu_check.sh once compiled there
PY=$BUILD/venv/bin/python
if ! "$PY" -c 'import numpy, Cython, setuptools, wheel' 2>/dev/null; then
  "$(python312)" -m venv --clear "$BUILD/venv"
  "$PY" -m pip install --disable-pip-version-check -q "numpy==$IMAGE_NUMPY" "$(pin cython)" "$(pin setuptools)" "$(pin wheel)"
fi
pip=("$PY" -m pip --disable-pip-version-check -q)

if ! compgen -G "$DEST/fairseq_fixed-*-cp312-*.whl" >/dev/null; then
  rm -rf "$BUILD/sdist"
  # Through the project venv: pip reads the sdist's metadata by running its setup.py, which imports
  # torch (an isolated build would fetch a CUDA torch, GBs, just for that). setup.sh makes the venv,
  # or returns at once when it is up to date.
  [[ -n ${PYTHON:-} ]] || bash "$ROOT/scripts/setup.sh" >&2
  "${PYTHON:-$ROOT/.venv/bin/python}" -m pip --disable-pip-version-check -q download --no-deps --no-binary :all: \
    --no-build-isolation -d "$BUILD/sdist" "$(pin fairseq-fixed)"
  tar -xzf "$BUILD"/sdist/fairseq_fixed-*.tar.gz -C "$BUILD/sdist"
  source_dir=$(echo "$BUILD"/sdist/fairseq_fixed-*/)
  # setup.py adds the torch C++ extensions (and imports torch for them) in two places: drop both.
  "$PY" - "$source_dir/setup.py" <<'EOF'
import sys
path = sys.argv[1]
text = open(path).read()
torch_extensions = text[text.index("extensions.extend(\n    [\n        cpp_extension.CppExtension("):
                        text.index('cmdclass = {"build_ext": cpp_extension.BuildExtension}\n')]
text = text.replace("from torch.utils import cpp_extension\n", "").replace(torch_extensions, "")
text = text.replace('cmdclass = {"build_ext": cpp_extension.BuildExtension}\n', "cmdclass = {}\n")
assert "cpp_extension" not in text, "fairseq-fixed's setup.py changed"
open(path, "w").write(text)
EOF
  MAX_JOBS=1 "${pip[@]}" wheel --no-deps --no-build-isolation -w "$DEST" "$source_dir"
fi

# What the GPU image lacks (KINDS.md's package list): hydra/omegaconf/bitarray for fairseq,
# cffi(+pycparser) because fairseq-fixed declares it. The rest of its needs are in the image.
for name in hydra-core omegaconf bitarray cffi pycparser; do
  have "$name" || "${pip[@]}" download --no-deps --only-binary=:all: -d "$DEST" "$(pin "$name")"
done

# antlr4-python3-runtime 4.9.3 (hydra/omegaconf need 4.9.*) ships only an sdist; it is pure
# Python, so build its py3-none-any wheel here and nothing needs building there.
if ! have antlr4-python3-runtime; then
  "${pip[@]}" download --no-deps --no-binary :all: -d "$BUILD/antlr4" "$(pin antlr4-python3-runtime)"
  "${pip[@]}" wheel --no-deps --no-build-isolation -w "$DEST" "$BUILD"/antlr4/*
fi

ls -l "$DEST"
du -sh "$DEST"
