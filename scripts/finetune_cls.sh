#!/usr/bin/env bash
# Fine-tune an encoder on a classification task from prepare_glue.sh with the
# stock sentence_prediction task and the recipe fairseq_compress/config/cls_finetune.yaml
# (fairseq's RoBERTa GLUE recipe: Adam 0.9/0.98, eps 1e-6, weight decay 0.1, linear decay
# after 6 % warmup, batch 32), then score the checkpoint best on dev with scripts/eval_cls.sh:
# SAVE_DIR/accuracy.json = {"accuracy": test (or dev when there is no test), "dev_accuracy": ...}.
# --pretrained CKPT restores a pretraining checkpoint (its optimizer, meters and
# data position are reset); without it the encoder starts from random weights.
# Arguments after -- go to fairseq-train and override the recipe.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage="usage: $0 DATA SAVE_DIR --arch ARCH [--pretrained CKPT] [--max-update N] [--lr LR] [--batch-size N] [--max-positions N] [--seed 1] [--force] [-- fairseq-train args]"
ARCH='' PRETRAINED='' MAX_UPDATE='' LR='' BATCH='' MAX_POSITIONS='' SEED=1
parse_args "$usage" "--arch=ARCH --pretrained=PRETRAINED --max-update=MAX_UPDATE --lr=LR --batch-size=BATCH --max-positions=MAX_POSITIONS --seed=SEED --" "$@"
((${#POSITIONAL[@]} == 2)) || die "$usage"
DATA=${POSITIONAL[0]} SAVE_DIR=${POSITIONAL[1]}
require_dir "$DATA" "DATA"
[[ -n $ARCH ]] || die "--arch is required (the pretrained model's arch); $usage"
require_arch "$ARCH" "plugin archs: roberta_l*_h*, electra_*"
[[ -f $DATA/label/dict.txt && -f $DATA/input0/train.bin ]] || die "$DATA is not a classification task: prepare it with scripts/prepare_glue.sh"
[[ -z $PRETRAINED || -f $PRETRAINED ]] || die "--pretrained: checkpoint '$PRETRAINED' does not exist"
# The recipe (fairseq_compress/config/cls_finetune.yaml) unless a flag overrides it.
recipe_args cls_finetune
[[ -n $MAX_UPDATE ]] || MAX_UPDATE=$(recipe_value cls_finetune optimization.max_update)
[[ -n $MAX_POSITIONS ]] || MAX_POSITIONS=$(recipe_value cls_finetune task.max_positions)
[[ $MAX_UPDATE =~ ^[1-9][0-9]*$ ]] || die "--max-update must be a positive integer, got '$MAX_UPDATE'"

n_classes=$(wc -l < "$DATA/label/dict.txt")
restore=()
[[ -n $PRETRAINED ]] && restore=(--restore-file "$(realpath "$PRETRAINED")" --reset-optimizer --reset-dataloader --reset-meters --reset-lr-scheduler)
set_overrides --max-positions "$MAX_POSITIONS" --lr "$LR" --batch-size "$BATCH"
# Derived from the run's length: a 6 % warmup, the decay's end, four validations and checkpoints.
cmd=(fairseq-train "$DATA" --user-dir "$USER_DIR" "${RECIPE[@]}" --num-classes "$n_classes" --arch "$ARCH"
  --seed "$SEED" "${restore[@]}" "${OVERRIDES[@]}" --max-update "$MAX_UPDATE" --total-num-update "$MAX_UPDATE"
  --warmup-updates $((MAX_UPDATE * 6 / 100)) --save-interval-updates $(((MAX_UPDATE + 3) / 4))
  --validate-interval-updates $(((MAX_UPDATE + 3) / 4)) --save-dir "$SAVE_DIR" "${EXTRA[@]}")

log "fine-tuning $ARCH on $DATA (${PRETRAINED:-from scratch})"
run_training "$SAVE_DIR" "${cmd[@]}"

result=$SAVE_DIR/accuracy.json
[[ -f $result && $result -nt $SAVE_DIR/.done ]] && { cat "$result"; exit 0; }
bash "$ROOT/scripts/eval_cls.sh" "$SAVE_DIR/checkpoint_best.pt" "$DATA" --max-positions "$MAX_POSITIONS" > "$result.tmp"
mv "$result.tmp" "$result"
cat "$result"
