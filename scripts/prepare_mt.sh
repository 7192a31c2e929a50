#!/usr/bin/env bash
# Prepare a parallel corpus for translation:
#   joint sentencepiece (unigram) on train -> encode all splits ->
#   fairseq-preprocess --joined-dictionary.
# SRC_DIR holds {train,valid,test}.{SRC,TGT}, plain or .gz: the shipped
# data-bin/raw/en_fr and the standard WMT14 En-Fr layout alike.
# OUT also keeps the sentencepiece model and the raw valid/test text
# (OUT/raw/), so OUT alone is enough to translate and score.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage="usage: $0 SRC_DIR OUT [--src en] [--tgt fr] [--vocab-size 8000] [--workers 2] [--force]"
SRC_LANG=en TGT_LANG=fr VOCAB_SIZE=8000 WORKERS=2
parse_args "$usage" "--src=SRC_LANG --tgt=TGT_LANG --vocab-size=VOCAB_SIZE --workers=WORKERS" "$@"
((${#POSITIONAL[@]} == 2)) || die "$usage"
SRC_DIR=${POSITIONAL[0]} OUT=${POSITIONAL[1]}
require_dir "$SRC_DIR" "SRC_DIR"
[[ $VOCAB_SIZE =~ ^[0-9]+$ ]] || die "--vocab-size must be a positive integer, got '$VOCAB_SIZE'"

inputs=()
for split in train valid test; do
  src=$(require_input "$SRC_DIR" "$split.$SRC_LANG")
  tgt=$(require_input "$SRC_DIR" "$split.$TGT_LANG")
  n_src=$(line_count "$src") n_tgt=$(line_count "$tgt")
  ((n_src == n_tgt)) || die "$src has $n_src lines but $tgt has $n_tgt: the sides of a parallel corpus must be line-aligned"
  ((n_src > 0)) || die "$src is empty"
  inputs+=("$src" "$tgt")
done

stamp=$(printf 'prepare_mt src=%s tgt=%s vocab=%s\n' "$SRC_LANG" "$TGT_LANG" "$VOCAB_SIZE"; describe_inputs "${inputs[@]}")
begin_output "$OUT" "$stamp" || exit 0

mkdir -p "$STAGING/raw" "$STAGING/pieces"
for split in train valid test; do
  for lang in "$SRC_LANG" "$TGT_LANG"; do
    read_text "$(input_file "$SRC_DIR" "$split.$lang")" > "$STAGING/raw/$split.$lang"
  done
done

log "training a joint sentencepiece model (unigram, $VOCAB_SIZE pieces)"
"$PY" "$USER_DIR/pipelines/spm.py" train --vocab-size "$VOCAB_SIZE" --model-prefix "$STAGING/spm" \
  --input "$STAGING/raw/train.$SRC_LANG,$STAGING/raw/train.$TGT_LANG"

log "encoding train/valid/test"
for split in train valid test; do
  for lang in "$SRC_LANG" "$TGT_LANG"; do
    "$PY" "$USER_DIR/pipelines/spm.py" encode --model "$STAGING/spm.model" \
      < "$STAGING/raw/$split.$lang" > "$STAGING/pieces/$split.$lang"
  done
done
# Training text is reproducible from SRC_DIR; only valid/test are kept as references.
rm "$STAGING/raw/train.$SRC_LANG" "$STAGING/raw/train.$TGT_LANG"

log "binarizing with fairseq-preprocess --joined-dictionary"
fairseq-preprocess --user-dir "$USER_DIR" --source-lang "$SRC_LANG" --target-lang "$TGT_LANG" \
  --trainpref "$STAGING/pieces/train" --validpref "$STAGING/pieces/valid" --testpref "$STAGING/pieces/test" \
  --destdir "$STAGING" --joined-dictionary --workers "$WORKERS" > "$STAGING/preprocess.log" 2>&1 \
  || { tail -n 5 "$STAGING/preprocess.log" >&2; die "fairseq-preprocess failed (log above)"; }
rm -r "$STAGING/pieces"

finish_output "$OUT" "$stamp"
log "wrote $OUT: $(wc -l < "$OUT/dict.$SRC_LANG.txt") dictionary entries;" \
  "train/valid/test pairs: $(line_count "$(input_file "$SRC_DIR" "train.$SRC_LANG")")/$(wc -l < "$OUT/raw/valid.$SRC_LANG")/$(wc -l < "$OUT/raw/test.$SRC_LANG")"
