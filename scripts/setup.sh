#!/usr/bin/env bash
# Install everything the project needs into ./.venv (override with VENV=...).
# Idempotent: when constraints.txt, setup.py and this script are unchanged since
# the last successful run, it returns in a second.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}
STAMP=$VENV/.fairseq_compress_setup

# The test suite lints scripts/ with Debian's shellcheck (tests/test_shellcheck.py).
if ! command -v shellcheck > /dev/null; then
  as_root=()
  ((EUID == 0)) || as_root=(sudo -n)
  if "${as_root[@]}" apt-get install -y -qq shellcheck > /dev/null 2>&1 \
      || { "${as_root[@]}" apt-get update -qq > /dev/null 2>&1 && "${as_root[@]}" apt-get install -y -qq shellcheck > /dev/null 2>&1; }; then
    echo "setup: installed shellcheck"
  else
    echo "setup: could not install shellcheck (apt-get as root): tests/test_shellcheck.py will fail until it is installed" >&2
  fi
fi

wanted=$(cat "$ROOT/constraints.txt" "$ROOT/setup.py" "$ROOT/scripts/setup.sh" | sha256sum | cut -d' ' -f1)
if [[ -f $STAMP && $(cat "$STAMP") == "$wanted" ]]; then
  echo "setup: $VENV is up to date"
  exit 0
fi

echo "setup: installing into $VENV (first run builds fairseq from source, ~3 min)"
[[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
constraints=(-c "$ROOT/constraints.txt")
# Build prerequisites of fairseq's C++/Cython extensions.
"${pip[@]}" install "${constraints[@]}" torch numpy cython setuptools wheel
# --no-deps: fairseq-fixed's metadata asks for torchaudio (a CUDA torch); its
# real dependencies come with this package below.
"${pip[@]}" install "${constraints[@]}" --no-deps --no-build-isolation fairseq-fixed
"${pip[@]}" install "${constraints[@]}" -e "${ROOT}[export,test]"
"$VENV/bin/python" -c "import fairseq.libbase, fairseq.data.data_utils_fast, fairseq_compress, ctranslate2, transformers"
# Nothing above may have replaced the CPU torch (transformers and ctranslate2 do not depend on it).
"$VENV/bin/python" -c "import sys, torch; sys.exit(None if torch.version.cuda is None else
  f'setup: a CUDA torch {torch.__version__} replaced the CPU one; reinstall with constraints.txt')"
echo "$wanted" > "$STAMP"
echo "setup: done"
