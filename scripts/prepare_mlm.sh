#!/usr/bin/env bash
# Prepare English text for masked-LM pretraining:
#   sentencepiece (unigram) on train -> encode -> fairseq-preprocess --only-source.
# SRC_DIR holds train.txt and valid.txt (optionally test.txt), plain or .gz,
# one sentence or paragraph a line. OUT keeps spm.model and dict.txt, which
# prepare_glue.sh reuses so fine-tuning data matches the pretrained model.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage="usage: $0 SRC_DIR OUT [--vocab-size 8000] [--workers 2] [--force]"
VOCAB_SIZE=8000 WORKERS=2
parse_args "$usage" "--vocab-size=VOCAB_SIZE --workers=WORKERS" "$@"
((${#POSITIONAL[@]} == 2)) || die "$usage"
SRC_DIR=${POSITIONAL[0]} OUT=${POSITIONAL[1]}
require_dir "$SRC_DIR" "SRC_DIR"
[[ $VOCAB_SIZE =~ ^[0-9]+$ ]] || die "--vocab-size must be a positive integer, got '$VOCAB_SIZE'"

splits=(train valid)
input_file "$SRC_DIR" test.txt > /dev/null && splits+=(test)
inputs=()
for split in "${splits[@]}"; do
  file=$(require_input "$SRC_DIR" "$split.txt")
  (($(line_count "$file") > 0)) || die "$file is empty"
  inputs+=("$file")
done

stamp=$(printf 'prepare_mlm vocab=%s\n' "$VOCAB_SIZE"; describe_inputs "${inputs[@]}")
begin_output "$OUT" "$stamp" || exit 0

mkdir -p "$STAGING/pieces"
for split in "${splits[@]}"; do
  # Blank lines would become empty samples; they carry no text.
  read_text "$(input_file "$SRC_DIR" "$split.txt")" | grep -v '^[[:space:]]*$' > "$STAGING/pieces/$split.raw" || true
done

log "training sentencepiece (unigram, $VOCAB_SIZE pieces)"
"$PY" "$USER_DIR/pipelines/spm.py" train --vocab-size "$VOCAB_SIZE" --model-prefix "$STAGING/spm" \
  --input "$STAGING/pieces/train.raw"

log "encoding ${splits[*]}"
prefixes=()
for split in "${splits[@]}"; do
  "$PY" "$USER_DIR/pipelines/spm.py" encode --model "$STAGING/spm.model" \
    < "$STAGING/pieces/$split.raw" > "$STAGING/pieces/$split"
  prefixes+=("--${split}pref" "$STAGING/pieces/$split")
done

log "binarizing with fairseq-preprocess --only-source"
fairseq-preprocess --user-dir "$USER_DIR" --only-source "${prefixes[@]}" --destdir "$STAGING" --workers "$WORKERS" \
  > "$STAGING/preprocess.log" 2>&1 \
  || { tail -n 5 "$STAGING/preprocess.log" >&2; die "fairseq-preprocess failed (log above)"; }
rm -r "$STAGING/pieces"

finish_output "$OUT" "$stamp"
log "wrote $OUT: $(wc -l < "$OUT/dict.txt") dictionary entries; splits: ${splits[*]}"
