# The translation half of scripts/structured_study.sh (--task mt): its defaults and steps.
# DATA is a corpus of scripts/prepare_mt.sh; the metric is BLEU (eval_bleu.sh: the stock
# fairseq-generate, beam 5) on the first --bleu-sentences test pairs, the speed fairseq-generate's
# sentences/s on the first --speed-sentences. Source it from structured_study.sh.
# shellcheck shell=bash

declare PY OUT FIRST BASE RESTORE  # structured_study.sh's, read by the steps below
# shellcheck disable=SC2034  # read by structured_study.sh
METRIC=bleu STUDY=structured_study IPQ_CONFIG=transformer
: "${ARCH:=transformer_l3_h256}" "${SMALL_ARCH:=transformer_l2_h128}" "${MAX_UPDATE:=700}" "${FINETUNE:=150}"
: "${SPEED_SENTENCES:=300}" "${BLEU_SENTENCES:=600}"
[[ -z $PRETRAIN_MINUTES$PRETRAINED$SMALL_PRETRAINED ]] \
  || die "--pretrain-minutes, --pretrained and --small-pretrained are for --task cls (translation trains from scratch)"
# shellcheck disable=SC2034  # read by structured_study.sh
RACE_ARGS=()  # SPEED_DATA is the sample
RECIPE=(--max-tokens 1024 --warmup 100 --lr 0.002)  # from scratch: ARCH and SMALL_ARCH
FINETUNE_RECIPE=(--max-tokens 1024 --lr 0.0005 --warmup 1)

setup_task() {  # DATA, and the test subsets for scoring (SCORE_DATA) and timing (SPEED_DATA)
  DATA=${POSITIONAL[0]:-$ROOT/data-bin/en_fr}
  require_dir "$DATA" "DATA (prepare it with scripts/prepare_mt.sh)"
  # shellcheck disable=SC2034  # SPEED_DATA: read by structured_study.sh
  SCORE_DATA=$(test_subset "$BLEU_SENTENCES") SPEED_DATA=$(test_subset "$SPEED_SENTENCES")
}

# test_subset N: DIR of the first N test pairs of DATA, binarized with its dictionaries.
test_subset() {
  local dir=$OUT/test$1 dict lang pair bins
  if [[ ! -d $dir ]]; then
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp/raw"
    for dict in "$DATA"/dict.*.txt; do
      lang=${dict##*/dict.} lang=${lang%.txt}
      head -n "$1" "$DATA/raw/test.$lang" > "$dir.tmp/raw/test.$lang"
      "$PY" "$ROOT/scripts/lib/spm.py" encode --model "$DATA/spm.model" < "$dir.tmp/raw/test.$lang" > "$dir.tmp/test.sp.$lang"
    done
    bins=("$DATA"/test.*-*.*.bin)
    pair=$(basename "${bins[0]}" | cut -d. -f2)
    fairseq-preprocess --source-lang "${pair%-*}" --target-lang "${pair#*-}" --testpref "$dir.tmp/test.sp" \
      --srcdict "$DATA/dict.${pair%-*}.txt" --tgtdict "$DATA/dict.${pair#*-}.txt" --destdir "$dir.tmp" \
      --workers 1 > "$dir.tmp/preprocess.log" 2>&1 || die "fairseq-preprocess of a test subset failed ($dir.tmp/preprocess.log)"
    cp "$DATA/spm.model" "$dir.tmp/"
    mv "$dir.tmp" "$dir"
  fi
  echo "$dir"
}

prepare_models() { :; }  # translation models train from scratch

train_model() {  # CONFIG SEED: ARCH with the demo's recipe and CONFIG's DropHead flags
  local flags=${DROPHEAD_FLAGS[$1]:-}
  # shellcheck disable=SC2086  # the flags are words
  bash "$ROOT/scripts/train_mt.sh" "$DATA" "$OUT/models/$1/seed$2" --arch "$ARCH" --max-update "$MAX_UPDATE" \
    --seed "$2" "${RECIPE[@]}" -- $flags
}

train_small() {  # as many minutes of training as ARCH's first run took (fairseq's train_wall)
  local seconds minutes
  seconds=$("$PY" -m fairseq_compress.studies.train_stats "$FIRST/train.log" --seconds-per-update)
  minutes=$(awk -v s="$seconds" -v n="$MAX_UPDATE" 'BEGIN { printf "%.2f", s * n / 60 }')
  bash "$ROOT/scripts/train_mt.sh" "$DATA" "$OUT/small" --arch "$SMALL_ARCH" --minutes "$minutes" "${RECIPE[@]}"
}

finetune_with_mask() {  # DIR PRUNING_FLAGS...: BASE fine-tuned for FINETUNE updates with the pruning task
  bash "$ROOT/scripts/train_mt.sh" "$DATA" "$1" --arch "$ARCH" --max-update "$FINETUNE" "${FINETUNE_RECIPE[@]}" \
    -- --task translation_pruning "${@:2}" --restore-file "$BASE" "${RESTORE[@]}"
}

finetune_from() {  # CKPT DIR UPDATES: CKPT fine-tuned for UPDATES updates, no mask
  bash "$ROOT/scripts/train_mt.sh" "$DATA" "$2" --arch "$ARCH" --max-update "$3" "${FINETUNE_RECIPE[@]}" \
    -- --restore-file "$1" "${RESTORE[@]}"
}

score() {  # CKPT [fairseq-generate args]: {"bleu": ...} on SCORE_DATA
  local ckpt=$1
  shift
  bash "$ROOT/scripts/eval_bleu.sh" "$ckpt" "$SCORE_DATA" --json -- "$@"
}
