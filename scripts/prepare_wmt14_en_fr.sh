#!/usr/bin/env bash
# Prepare WMT14 En-Fr (the paper's MT setting) from the statmt.org archives,
# extracted into WMT_DIR as they unpack (the layout fairseq's
# examples/translation/prepare-wmt14en2fr.sh downloads):
#   training/europarl-v7.fr-en.{en,fr}        commoncrawl.fr-en.{en,fr}
#   training/news-commentary-v9.fr-en.{en,fr} giga-fren.release2.fixed.{en,fr}[.gz]
#   un/undoc.2000.fr-en.{en,fr}               dev/newstest2013.{en,fr}
#   test-full/newstest2014-fren-{src.en,ref.fr}.sgm
# Every training corpus found is used (at least one is needed). Stage 1 writes
# the cleaned training text, newstest2013 (valid) and newstest2014 (test) to
# TEXT_DIR; stage 2 is prepare_mt.sh TEXT_DIR OUT, the pipeline of the shipped
# corpus, so everything downstream (train_mt.sh, the size sweep, eval_bleu.sh) is
# unchanged. Both stages are skipped when already done from the same inputs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage="usage: $0 WMT_DIR OUT [--text-dir OUT.text] [--vocab-size 40000] [--max-len 250] [--max-ratio 1.5] [--workers 2] [--force]"
TEXT_DIR='' VOCAB_SIZE=40000 MAX_LEN=250 MAX_RATIO=1.5 WORKERS=2
parse_args "$usage" "--text-dir=TEXT_DIR --vocab-size=VOCAB_SIZE --max-len=MAX_LEN --max-ratio=MAX_RATIO --workers=WORKERS" "$@"
((${#POSITIONAL[@]} == 2)) || die "$usage"
WMT_DIR=${POSITIONAL[0]} OUT=${POSITIONAL[1]}
TEXT_DIR=${TEXT_DIR:-$OUT.text}
require_dir "$WMT_DIR" "WMT_DIR"
[[ $MAX_LEN =~ ^[1-9][0-9]*$ ]] || die "--max-len must be a positive integer, got '$MAX_LEN'"
[[ $MAX_RATIO =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--max-ratio must be a number >= 1, got '$MAX_RATIO'"

CORPORA=(training/europarl-v7.fr-en commoncrawl.fr-en training/news-commentary-v9.fr-en
         giga-fren.release2.fixed un/undoc.2000.fr-en)
pairs=() inputs=() found=()
for corpus in "${CORPORA[@]}"; do
  en=$(input_file "$WMT_DIR" "$corpus.en") || continue
  fr=$(require_input "$WMT_DIR" "$corpus.fr")
  pairs+=(--pair "$en" "$fr") inputs+=("$en" "$fr") found+=("$corpus")
done
((${#found[@]})) || die "WMT_DIR '$WMT_DIR' holds none of the training corpora ${CORPORA[*]/%/.en} (plain or .gz)"
valid_en=$(require_input "$WMT_DIR" dev/newstest2013.en)
valid_fr=$(require_input "$WMT_DIR" dev/newstest2013.fr)
test_en=$(require_input "$WMT_DIR" test-full/newstest2014-fren-src.en.sgm)
test_fr=$(require_input "$WMT_DIR" test-full/newstest2014-fren-ref.fr.sgm)
inputs+=("$valid_en" "$valid_fr" "$test_en" "$test_fr")

stamp=$(printf 'prepare_wmt14_en_fr max_len=%s max_ratio=%s\n' "$MAX_LEN" "$MAX_RATIO"; describe_inputs "${inputs[@]}")
if begin_output "$TEXT_DIR" "$stamp"; then
  log "cleaning ${found[*]} (1-$MAX_LEN words a side, length ratio <= $MAX_RATIO)"
  "$PY" "$USER_DIR/pipelines/parallel_text.py" clean "${pairs[@]}" --max-len "$MAX_LEN" --max-ratio "$MAX_RATIO" \
    --out-src "$STAGING/train.en" --out-tgt "$STAGING/train.fr"
  read_text "$valid_en" > "$STAGING/valid.en"
  read_text "$valid_fr" > "$STAGING/valid.fr"
  "$PY" "$USER_DIR/pipelines/parallel_text.py" sgm "$test_en" > "$STAGING/test.en"
  "$PY" "$USER_DIR/pipelines/parallel_text.py" sgm "$test_fr" > "$STAGING/test.fr"
  finish_output "$TEXT_DIR" "$stamp"
fi

force=()
[[ ${FORCE:-0} == 1 ]] && force=(--force)
bash "$ROOT/scripts/prepare_mt.sh" "$TEXT_DIR" "$OUT" --src en --tgt fr --vocab-size "$VOCAB_SIZE" \
  --workers "$WORKERS" "${force[@]}"
