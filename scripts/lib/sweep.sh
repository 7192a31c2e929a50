# The size sweep of "Train Large, Then Compress" (Li et al. 2020), shared by
# sweep_mt.sh and sweep_mlm.sh; source it after lib/common.sh.
# shellcheck shell=bash

declare ROOT ARCHS_EXAMPLE BATCH_TOKENS MICRO_TOKENS VALIDATE_SECONDS LR WARMUP SEED  # the sourcing script's
# shellcheck disable=SC2034  # the sourcing script parses its options with it
SWEEP_OPTIONS="--budget-minutes=BUDGET --archs=ARCHS --batch-tokens=BATCH_TOKENS --max-micro-tokens=MICRO_TOKENS --validate-seconds=VALIDATE_SECONDS --lr=LR --warmup=WARMUP --seed=SEED"

# run_sweep TRAIN_SCRIPT DATA OUT Y [fairseq-train args...]: train every arch of
# $ARCHS with TRAIN_SCRIPT for $BUDGET minutes of training time and the same
# effective batch of $BATCH_TOKENS tokens (micro-batches of at most
# $MICRO_TOKENS, --update-freq makes up the rest), validating every
# $VALIDATE_SECONDS s of training time; then plot Y against training time and
# updates and write the summary table (OUT/summary.csv). Finished runs are reused.
run_sweep() {
  local train=$1 data=$2 out=$3 y=$4 arch update_freq micro x value
  shift 4
  [[ -n $BUDGET ]] || die "--budget-minutes is required"
  [[ -n $ARCHS ]] || die "--archs is required (e.g. '${ARCHS_EXAMPLE}')"
  for value in "$BATCH_TOKENS" "$MICRO_TOKENS"; do
    [[ $value =~ ^[1-9][0-9]*$ ]] || die "--batch-tokens and --max-micro-tokens must be positive integers, got '$value'"
  done
  [[ $VALIDATE_SECONDS =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--validate-seconds must be a number >= 0, got '$VALIDATE_SECONDS'"
  for arch in $ARCHS; do require_arch "$arch" "e.g. '${ARCHS_EXAMPLE}'"; done
  update_freq=$(( (BATCH_TOKENS + MICRO_TOKENS - 1) / MICRO_TOKENS ))
  micro=$(( BATCH_TOKENS / update_freq ))
  log "$ARCHS: $BUDGET min of training each, batches of $micro x $update_freq tokens, validation every ${VALIDATE_SECONDS}s"
  for arch in $ARCHS; do
    bash "$ROOT/scripts/$train" "$data" "$out/$arch" --arch "$arch" --minutes "$BUDGET" --max-tokens "$micro" \
      --lr "$LR" --warmup "$WARMUP" --seed "$SEED" -- --update-freq "$update_freq" \
      --validate-interval-seconds "$VALIDATE_SECONDS" "$@"
  done
  for x in wall updates; do
    fairseq-compress plot "$out" --x "$x" --y "$y" --out "$out/${y}_vs_${x}.png"
  done
  fairseq-compress summarize "$out" --y "$y" --csv "$out/summary.csv"
}
