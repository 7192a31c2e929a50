#!/usr/bin/env bash
# The main job, end to end on the corpus shipped in data-bin/raw: prepare EN-FR -> train transformer_l3_h256 for
# a budget of training time -> compress it (int8; heads and FFN neurons removed, then fine-tuned; the same + int8;
# iPQ) -> deploy the small one to CTranslate2 int8 -> a table of every artifact's test BLEU, MB on disk and
# sentences/s (docs/results/demo.{csv,png}). Installs first (scripts/setup.sh: nothing to do once done). The
# stages are fairseq_compress/studies/demo.py, its recipe fairseq_compress/studies/configs/demo.yaml; arguments
# go to it (key=value, e.g. minutes=5). Rerunning reuses every finished stage.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec .venv/bin/python -m fairseq_compress.studies.demo "$@"
