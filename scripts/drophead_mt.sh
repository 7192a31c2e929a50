#!/usr/bin/env bash
# Scheduled DropHead where regularization matters. On the first --train-pairs pairs of en_fr
# (--valid-pairs of its valid split, spread over it, and its full test split), few enough that
# the baseline overfits within --max-update
# (its valid loss reaches a minimum and rises again: docs/results/drophead_mt_valid_loss.png),
# train baselines with each of --dropouts, then DropHead p = 0.1 and 0.2 (V schedule) on top
# of the dropout whose mean best valid loss is lowest; --seeds each, two runs at a time (one
# per core). A run is scored by the test BLEU (detokenized sacreBLEU) of its checkpoint_best.pt,
# the one of lowest valid loss (validation every --validate-every updates).
# Outputs: docs/results/drophead_mt.csv (per run: BLEU, best valid loss, its update, how far
# the valid loss rose after it) and docs/results/drophead_mt_valid_loss.{csv,png}.
# Finished runs are reused, so an interrupted study resumes where it stopped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$ROOT/scripts/lib/drophead.sh"

usage="usage: $0 [RAW] [OUT] [--train-pairs 2000] [--valid-pairs 600] [--vocab-size 2000] [--arch transformer_l3_h256] [--max-update 1000] [--validate-every 50] [--dropouts '0.1 0.3'] [--seeds '1 2 3']"
TRAIN_PAIRS=2000 VALID_PAIRS=600 VOCAB_SIZE=2000 ARCH=transformer_l3_h256 MAX_UPDATE=1000 VALIDATE_EVERY=50 DROPOUTS="0.1 0.3" SEEDS="1 2 3"
parse_args "$usage" "--train-pairs=TRAIN_PAIRS --valid-pairs=VALID_PAIRS --vocab-size=VOCAB_SIZE --arch=ARCH --max-update=MAX_UPDATE --validate-every=VALIDATE_EVERY --dropouts=DROPOUTS --seeds=SEEDS" "$@"
RAW=${POSITIONAL[0]:-$ROOT/data-bin/raw} OUT=${POSITIONAL[1]:-$ROOT/checkpoints/drophead_mt}
require_dir "$RAW/en_fr" "RAW/en_fr (the shipped corpus is data-bin/raw)"
require_arch "$ARCH" "plugin archs: transformer_l{2,3,6,12,18,24}_h{128,256,512,768,1024}"
for value in "$TRAIN_PAIRS" "$VALID_PAIRS" "$MAX_UPDATE" "$VALIDATE_EVERY"; do
  [[ $value =~ ^[1-9][0-9]*$ ]] || die "--train-pairs, --valid-pairs, --max-update and --validate-every must be positive integers, got '$value'"
done
require_dropouts
WORK=$OUT/pairs${TRAIN_PAIRS}_valid$VALID_PAIRS DATA=$OUT/pairs${TRAIN_PAIRS}_valid$VALID_PAIRS/bin

# The subset, prepared as usual (a sentencepiece model of its own, --vocab-size pieces). The valid
# pairs are every k-th of the split (validating often on all of it would cost more than training).
if [[ ! -d $WORK/raw ]]; then
  rm -rf "$WORK/raw.tmp" && mkdir -p "$WORK/raw.tmp"
  valid_lines=$(read_text "$(require_input "$RAW/en_fr" valid.en)" | wc -l)
  for lang in en fr; do
    read_text "$(require_input "$RAW/en_fr" "train.$lang")" | awk -v n="$TRAIN_PAIRS" 'NR <= n' > "$WORK/raw.tmp/train.$lang"
    read_text "$(require_input "$RAW/en_fr" "valid.$lang")" \
      | awk -v k=$(( (valid_lines + VALID_PAIRS - 1) / VALID_PAIRS )) 'NR % k == 1 || k == 1' > "$WORK/raw.tmp/valid.$lang"
    read_text "$(require_input "$RAW/en_fr" "test.$lang")" > "$WORK/raw.tmp/test.$lang"
  done
  mv "$WORK/raw.tmp" "$WORK/raw"
fi
bash "$ROOT/scripts/prepare_mt.sh" "$WORK/raw" "$DATA" --vocab-size "$VOCAB_SIZE"

# train_and_score CONFIG SEED [fairseq-train args]: one run into WORK/CONFIG/seedSEED, then its scores.
train_and_score() {
  local run=$WORK/$1/seed$2 seed=$2
  shift 2
  bash "$ROOT/scripts/train_mt.sh" "$DATA" "$run" --arch "$ARCH" --max-update "$MAX_UPDATE" --seed "$seed" \
    --max-tokens 1024 --warmup 100 -- --validate-interval-updates "$VALIDATE_EVERY" \
    --save-interval-updates "$VALIDATE_EVERY" "$@"
  run_once "$run/valid.json" "$PY" "$ROOT/scripts/lib/valid_curves.py" --run "$run"
  run_once "$run/bleu.json" bash "$ROOT/scripts/eval_bleu.sh" "$run/checkpoint_best.pt" "$DATA" --json
  log "$run: $(cat "$run/valid.json") $(cat "$run/bleu.json")"
}

drophead_study train_and_score best_valid_loss valid.json min

"$PY" "$ROOT/scripts/lib/valid_curves.py" "${STUDY_GROUPS[@]}" --csv "$ROOT/docs/results/drophead_mt_valid_loss.csv" \
  --png "$ROOT/docs/results/drophead_mt_valid_loss.png" > /dev/null
echo "Scheduled DropHead, $ARCH on $TRAIN_PAIRS EN-FR pairs, $MAX_UPDATE updates, test BLEU of the best-valid checkpoint:"
"$PY" -m fairseq_compress.studies.summarize_runs "${STUDY_GROUPS[@]}" --metric bleu best_valid_loss best_update valid_loss_rise \
  --metric-file bleu.json valid.json --csv "$ROOT/docs/results/drophead_mt.csv"
