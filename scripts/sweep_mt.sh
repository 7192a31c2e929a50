#!/usr/bin/env bash
# Train Large, Then Compress (Li et al. 2020), translation: each --archs model
# trained on DATA (from prepare_mt.sh) for the same minutes of training time and
# the same effective token batch, validated every --validate-seconds (loss and
# detokenized sacreBLEU of greedy translations of the valid split).
# Writes OUT/<arch>/ (checkpoints, train.log, curve.jsonl) and
# OUT/bleu_vs_wall.png, OUT/bleu_vs_updates.png, OUT/summary.csv. Finished runs are reused.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$ROOT/scripts/lib/sweep.sh"

ARCHS_EXAMPLE="transformer_l3_h256 transformer_l6_h256 transformer_l6_h512"
usage="usage: $0 DATA OUT --budget-minutes M --archs '$ARCHS_EXAMPLE' [--batch-tokens 4096] [--max-micro-tokens 4096] [--validate-seconds 120] [--lr 0.002] [--warmup 400] [--seed 1] [-- fairseq-train args]"
BUDGET='' ARCHS='' BATCH_TOKENS=4096 MICRO_TOKENS=4096 VALIDATE_SECONDS=120 LR=0.002 WARMUP=400 SEED=1
parse_args "$usage" "$SWEEP_OPTIONS --" "$@"
((${#POSITIONAL[@]} == 2)) || die "$usage"
require_dir "${POSITIONAL[0]}" DATA

run_sweep train_mt.sh "${POSITIONAL[0]}" "${POSITIONAL[1]}" bleu \
  --eval-bleu --eval-bleu-remove-bpe sentencepiece --eval-bleu-args '{"beam": 1, "max_len_a": 1.5, "max_len_b": 10}' \
  "${EXTRA[@]}"
