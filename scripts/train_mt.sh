#!/usr/bin/env bash
# Train a translation model with fairseq-train --user-dir fairseq_compress,
# for a budget of training time (--minutes: the plugin's *_timed task, validation not
# counted, curve in SAVE_DIR/curve.jsonl) and/or a number of updates (--max-update).
# The recipe is fairseq_compress/config/mt_en_fr.yaml (Adam, inverse-sqrt warmup, label smoothing
# 0.1: fairseq's standard one, with small batches); --lr, --warmup and --max-tokens override it, and
# so do the arguments after --, which go to fairseq-train.
# SAVE_DIR remembers the command that trained it (see run_training in lib/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage="usage: $0 DATA SAVE_DIR --arch ARCH [--minutes M] [--max-update N] [--lr LR] [--warmup N] [--max-tokens N] [--seed 1] [--force] [-- fairseq-train args]"
ARCH='' MINUTES='' MAX_UPDATE=0 LR='' WARMUP='' MAX_TOKENS='' SEED=1
parse_args "$usage" "--arch=ARCH --minutes=MINUTES --max-update=MAX_UPDATE --lr=LR --warmup=WARMUP --max-tokens=MAX_TOKENS --seed=SEED --" "$@"
((${#POSITIONAL[@]} == 2)) || die "$usage"
DATA=${POSITIONAL[0]} SAVE_DIR=${POSITIONAL[1]}
require_dir "$DATA" "DATA"
[[ -n $ARCH ]] || die "--arch is required (e.g. transformer_l3_h256); $usage"
require_arch "$ARCH" "plugin archs: transformer_l{2,3,6,12,18,24}_h{128,256,512,768,1024}"
[[ -n $MINUTES || $MAX_UPDATE != 0 ]] || die "give --minutes and/or --max-update"
set_budget "$MINUTES" translation
[[ $MAX_UPDATE =~ ^[0-9]+$ ]] || die "--max-update must be a non-negative integer, got '$MAX_UPDATE'"
ls "$DATA"/train.*-*.*.bin > /dev/null 2>&1 || die "$DATA holds no binarized train split: prepare it with scripts/prepare_mt.sh"

recipe_args mt_en_fr
set_overrides --lr "$LR" --warmup-updates "$WARMUP" --max-tokens "$MAX_TOKENS"

cmd=(fairseq-train "$DATA" --user-dir "$USER_DIR" "${RECIPE[@]}" --arch "$ARCH" --seed "$SEED" "${OVERRIDES[@]}"
  --max-update "$MAX_UPDATE" "${BUDGET[@]}" --save-dir "$SAVE_DIR" "${EXTRA[@]}")

log "training $ARCH on $DATA"
run_training "$SAVE_DIR" "${cmd[@]}"
