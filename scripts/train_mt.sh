#!/usr/bin/env bash
# Train a translation model with fairseq-train --user-dir fairseq_compress,
# for a budget of training time (--minutes: the plugin's *_timed task, validation not
# counted, curve in SAVE_DIR/curve.jsonl) and/or a number of updates (--max-update).
# The recipe (Adam, inverse-sqrt warmup, label smoothing 0.1) is fairseq's
# standard one; arguments after -- go to fairseq-train and override it.
# SAVE_DIR remembers the command that trained it (see run_training in lib/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage="usage: $0 DATA SAVE_DIR --arch ARCH [--minutes M] [--max-update N] [--lr 0.002] [--warmup 400] [--max-tokens 4096] [--seed 1] [--force] [-- fairseq-train args]"
ARCH='' MINUTES='' MAX_UPDATE=0 LR=0.002 WARMUP=400 MAX_TOKENS=4096 SEED=1
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

cmd=(fairseq-train "$DATA" --user-dir "$USER_DIR" --arch "$ARCH" --seed "$SEED"
  --optimizer adam --adam-betas "(0.9,0.98)" --weight-decay 0.0001 --clip-norm 1.0
  --lr "$LR" --lr-scheduler inverse_sqrt --warmup-updates "$WARMUP"
  --criterion label_smoothed_cross_entropy --label-smoothing 0.1
  --max-tokens "$MAX_TOKENS" --max-update "$MAX_UPDATE" "${BUDGET[@]}"
  --save-dir "$SAVE_DIR" --no-epoch-checkpoints --keep-interval-updates 1 --save-interval-updates 500
  --num-workers 0 --log-format json --log-interval 50 "${EXTRA[@]}")

log "training $ARCH on $DATA"
run_training "$SAVE_DIR" "${cmd[@]}"
