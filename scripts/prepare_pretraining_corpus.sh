#!/usr/bin/env bash
# Prepare a pretraining corpus (the paper's: Wikipedia + BookCorpus dumps) from
# one or more local English text files, one sentence or paragraph a line,
# plain or .gz. Stage 1 concatenates them without blank lines and holds out
# --valid-lines lines, spread evenly through the whole text, as the valid
# split (TEXT_DIR/{train,valid}.txt); stage 2 is prepare_mlm.sh TEXT_DIR OUT,
# the pipeline of the shipped text, so pretrain_mlm.sh, the size sweep and
# prepare_glue.sh (MNLI from the GLUE TSVs) work on OUT unchanged. Both stages
# are skipped when already done from the same inputs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage="usage: $0 FILE... OUT [--text-dir OUT.text] [--valid-lines 10000] [--vocab-size 32000] [--workers 2] [--force]"
TEXT_DIR='' VALID_LINES=10000 VOCAB_SIZE=32000 WORKERS=2
parse_args "$usage" "--text-dir=TEXT_DIR --valid-lines=VALID_LINES --vocab-size=VOCAB_SIZE --workers=WORKERS" "$@"
((${#POSITIONAL[@]} >= 2)) || die "$usage"
OUT=${POSITIONAL[-1]}
FILES=("${POSITIONAL[@]:0:${#POSITIONAL[@]}-1}")
TEXT_DIR=${TEXT_DIR:-$OUT.text}
[[ $VALID_LINES =~ ^[1-9][0-9]*$ ]] || die "--valid-lines must be a positive integer, got '$VALID_LINES'"
for file in "${FILES[@]}"; do
  [[ -f $file ]] || die "corpus file '$file' does not exist"
done

stamp=$(printf 'prepare_pretraining_corpus valid_lines=%s\n' "$VALID_LINES"; describe_inputs "${FILES[@]}")
if begin_output "$TEXT_DIR" "$stamp"; then
  text() { for file in "${FILES[@]}"; do read_text "$file"; done | grep -v '^[[:space:]]*$' || true; }
  lines=$(text | wc -l)
  ((lines > 2 * VALID_LINES)) || die "the corpus files hold $lines non-blank lines: too few to hold out --valid-lines $VALID_LINES (need more than twice as many)"
  stride=$((lines / VALID_LINES))
  log "$lines lines; every ${stride}th line (first $VALID_LINES of them) -> valid, the rest -> train"
  text | awk -v stride="$stride" -v n="$VALID_LINES" -v train="$STAGING/train.txt" -v valid="$STAGING/valid.txt" \
    'NR % stride == 0 && held < n { print > valid; held++; next } { print > train }'
  finish_output "$TEXT_DIR" "$stamp"
fi

force=()
[[ ${FORCE:-0} == 1 ]] && force=(--force)
bash "$ROOT/scripts/prepare_mlm.sh" "$TEXT_DIR" "$OUT" --vocab-size "$VOCAB_SIZE" --workers "$WORKERS" "${force[@]}"
