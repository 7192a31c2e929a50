#!/usr/bin/env bash
# Accuracy of a sentence-classification checkpoint with the stock
# fairseq-validate on the dev (and test, when prepared) split of a task from
# prepare_glue.sh. Prints {"accuracy": test (or dev when there is no test),
# "dev_accuracy": dev} and keeps the log next to the checkpoint (CKPT.validate.log).
# --speed times the forward passes (fairseq-compress timed-validate: the same fairseq-validate)
# and adds "sentences_per_s" over both splits; --speed-sentences N times (and scores) only a sample
# of each split, its first N sentences in whole batches (fairseq's --max-valid-steps; the batches
# come in a seeded random order). Arguments after -- go to fairseq-validate.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage="usage: $0 CKPT DATA [--max-positions 128] [--speed] [--speed-sentences N] [-- fairseq-validate args]"
MAX_POSITIONS=128 SPEED=0 SPEED_SENTENCES='' BATCH_SIZE=64
parse_args "$usage" "--max-positions=MAX_POSITIONS --speed=SPEED? --speed-sentences=SPEED_SENTENCES --" "$@"
((${#POSITIONAL[@]} == 2)) || die "$usage"
CKPT=${POSITIONAL[0]} DATA=${POSITIONAL[1]}
[[ -f $CKPT ]] || die "checkpoint '$CKPT' does not exist"
[[ -f $DATA/label/dict.txt && -f $DATA/input0/valid.bin ]] || die "$DATA is not a classification task: prepare it with scripts/prepare_glue.sh"

n_classes=$(wc -l < "$DATA/label/dict.txt")
subsets=valid
[[ -f $DATA/input0/test.bin ]] && subsets=valid,test
LOG=${CKPT%.pt}.validate.log
validate=(fairseq-validate) sample=()
if [[ -n $SPEED_SENTENCES ]]; then
  [[ $SPEED_SENTENCES =~ ^[1-9][0-9]*$ ]] || die "--speed-sentences must be a positive integer, got '$SPEED_SENTENCES'"
  SPEED=1 sample=(--max-valid-steps $(((SPEED_SENTENCES + BATCH_SIZE - 1) / BATCH_SIZE)))
fi
if ((SPEED)); then validate=(fairseq-compress timed-validate); fi
"${validate[@]}" "$DATA" --user-dir "$USER_DIR" --path "$CKPT" \
  --task sentence_prediction --criterion sentence_prediction --num-classes "$n_classes" \
  --max-positions "$MAX_POSITIONS" --shorten-method truncate \
  --valid-subset "$subsets" --batch-size "$BATCH_SIZE" "${sample[@]}" --num-workers 0 --log-format json "${EXTRA[@]}" > "$LOG" 2>&1 \
  || { tail -n 5 "$LOG" >&2; die "fairseq-validate failed (log: $LOG)"; }
fairseq-compress validation-summary --metric accuracy < "$LOG"
