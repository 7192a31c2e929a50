#!/usr/bin/env bash
# Pretrain a masked-LM encoder (roberta_l*_h*, or ELECTRA with --criterion electra)
# with fairseq-train --user-dir fairseq_compress on data from prepare_mlm.sh,
# for a budget of training time (--minutes: the plugin's *_timed task, validation not
# counted, curve in SAVE_DIR/curve.jsonl) and/or a number of updates (--max-update).
# The recipe is fairseq_compress/config/mlm_pretrain.yaml, RoBERTa's (Adam 0.9/0.98, eps 1e-6,
# decoupled weight decay 0.01 (fairseq's adam is AdamW), 15 % masking of full-length blocks) with an
# inverse-sqrt schedule, so a run can be cut at any wall-clock time, or with --schedule linear the
# papers' warmup then linear decay to 0 at --max-update; ELECTRA's (--criterion electra) is
# electra_pretrain.yaml, with its masking (85 % [MASK], 15 % kept, no random tokens). The flags, and
# the arguments after -- (they go to fairseq-train), override the recipe.
# SAVE_DIR remembers the command that trained it (see run_training in lib/common.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage="usage: $0 DATA SAVE_DIR --arch ARCH [--criterion masked_lm|electra] [--minutes M] [--max-update N] [--lr LR] [--warmup N] [--schedule inverse_sqrt|linear] [--tokens-per-sample N] [--max-tokens N] [--seed 1] [--force] [-- fairseq-train args]"
ARCH='' CRITERION=masked_lm MINUTES='' MAX_UPDATE=0 LR='' WARMUP='' SCHEDULE=inverse_sqrt TOKENS_PER_SAMPLE='' MAX_TOKENS='' SEED=1
parse_args "$usage" "--arch=ARCH --criterion=CRITERION --minutes=MINUTES --max-update=MAX_UPDATE --lr=LR --warmup=WARMUP --schedule=SCHEDULE --tokens-per-sample=TOKENS_PER_SAMPLE --max-tokens=MAX_TOKENS --seed=SEED --" "$@"
((${#POSITIONAL[@]} == 2)) || die "$usage"
DATA=${POSITIONAL[0]} SAVE_DIR=${POSITIONAL[1]}
require_dir "$DATA" "DATA"
[[ -n $ARCH ]] || die "--arch is required (e.g. roberta_l3_h256); $usage"
require_arch "$ARCH" "plugin archs: roberta_l{2,3,6,12,18,24}_h{128,256,512,768,1024}, electra_{tiny,small,base,large}"
[[ -n $MINUTES || $MAX_UPDATE != 0 ]] || die "give --minutes and/or --max-update"
set_budget "$MINUTES" masked_lm
[[ $MAX_UPDATE =~ ^[0-9]+$ ]] || die "--max-update must be a non-negative integer, got '$MAX_UPDATE'"
[[ -f $DATA/train.bin && -f $DATA/dict.txt ]] || die "$DATA holds no binarized train split: prepare it with scripts/prepare_mlm.sh"
case $SCHEDULE in
  inverse_sqrt) schedule=() ;;
  linear) ((MAX_UPDATE > 0)) || die "--schedule linear needs --max-update (where the decay reaches 0)"
    schedule=(--lr-scheduler polynomial_decay --power 1 --end-learning-rate 0 --total-num-update "$MAX_UPDATE") ;;
  *) die "--schedule must be inverse_sqrt or linear, got '$SCHEDULE'" ;;
esac
case $CRITERION in
  masked_lm) recipe_args mlm_pretrain ;;
  electra) recipe_args electra_pretrain ;;
  *) die "--criterion must be masked_lm or electra, got '$CRITERION'" ;;
esac
set_overrides --lr "$LR" --warmup-updates "$WARMUP" --tokens-per-sample "$TOKENS_PER_SAMPLE" --max-tokens "$MAX_TOKENS"

cmd=(fairseq-train "$DATA" --user-dir "$USER_DIR" "${RECIPE[@]}" --arch "$ARCH" --seed "$SEED" "${schedule[@]}"
  "${OVERRIDES[@]}" --max-update "$MAX_UPDATE" "${BUDGET[@]}"  # a later --task wins
  --save-dir "$SAVE_DIR" "${EXTRA[@]}")

log "pretraining $ARCH ($CRITERION) on $DATA"
run_training "$SAVE_DIR" "${cmd[@]}"
