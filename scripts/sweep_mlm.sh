#!/usr/bin/env bash
# Train Large, Then Compress (Li et al. 2020), masked-LM pretraining: each
# --archs model trained on DATA (from prepare_mlm.sh) for the same minutes of
# training time and the same effective token batch, validated (perplexity of the
# masked tokens) every --validate-seconds of training time.
# Writes OUT/<arch>/ (checkpoints, train.log, curve.jsonl) and
# OUT/ppl_vs_wall.png, OUT/ppl_vs_updates.png, OUT/summary.csv. Finished runs are reused.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$ROOT/scripts/lib/sweep.sh"

ARCHS_EXAMPLE="roberta_l3_h256 roberta_l6_h256 roberta_l3_h512 roberta_l6_h512"
usage="usage: $0 DATA OUT --budget-minutes M --archs '$ARCHS_EXAMPLE' [--batch-tokens 4096] [--max-micro-tokens 4096] [--validate-seconds 120] [--lr 0.0005] [--warmup 500] [--seed 1] [-- fairseq-train args]"
BUDGET='' ARCHS='' BATCH_TOKENS=4096 MICRO_TOKENS=4096 VALIDATE_SECONDS=120 LR=0.0005 WARMUP=500 SEED=1
parse_args "$usage" "$SWEEP_OPTIONS --" "$@"
((${#POSITIONAL[@]} == 2)) || die "$usage"
require_dir "${POSITIONAL[0]}" DATA

run_sweep pretrain_mlm.sh "${POSITIONAL[0]}" "${POSITIONAL[1]}" ppl "${EXTRA[@]}"
