#!/usr/bin/env bash
# Install (if needed) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
# One pytest-xdist worker per core: most of a test's time (CLI start-up, tiny models) is single-threaded.
# The 25 slowest tests are listed at the end: the suite must stay under 15 minutes on 2 idle cores.
exec "${VENV:-$ROOT/.venv}/bin/python" -m pytest -q -n auto --durations=25 tests "$@"
