#!/usr/bin/env bash
# Structured compression (docs/structured.md): what removing heads, FFN neurons and layers buys in speed and
# costs in quality, whether DropHead makes heads removable, and the Train-Large question at equal
# speed; on translation (--task mt, the default: BLEU, fairseq-generate sentences/s; steps in
# scripts/lib/structured_mt.sh) or sentence classification (--task cls: accuracy, the
# classifier's sentences/s; steps in scripts/lib/structured_cls.sh):
#  1. models: ARCH without DropHead and with DropHead p = 0.1 / 0.2 (V schedule), --seeds each,
#     and --small-arch with as much training time. mt: trained from scratch on DATA
#     (scripts/prepare_mt.sh) for --max-update updates with the demo's recipe, the small model
#     for as many minutes as ARCH's first run took. cls: ARCH and the small arch pretrained as
#     masked LMs at once for --pretrain-minutes each (or --pretrained / --small-pretrained),
#     then fine-tuned on the shipped cls task for --max-update updates.
#  2. speed vs fraction kept: from ARCH (no DropHead, first seed), a --finetune-updates
#     fine-tune with each structured mask (--prune-granularity head / neuron / layer, then
#     combined; gradual schedule), shrunk (fairseq-compress shrink); plus unstructured weight
#     pruning and iPQ for the plot, and the reference: the same fine-tune without a mask. The metric of each, fp32 and int8 (mt: BLEU on the first
#     --bleu-sentences test pairs; cls: test accuracy); sentences/s (mt: fairseq-generate on the
#     first --speed-sentences; cls: a sample of --speed-sentences of dev and of test), one thread and two, alternating every
#     contender in one pass (nothing else running).
#  3. DropHead makes heads removable: every model of 1 shrunk to 75 / 50 / 25 % of its heads,
#     without fine-tuning and with --head-finetune-updates of it; the metric on the same data.
#  4. equal speed: the best compressed ARCH at least as fast as --small-arch, against it.
# Outputs (--results, default docs/results; cls files are named structured_cls_*):
# structured_{speed,heads}.csv, structured_speed.png (metric vs sentences/s), structured_heads.png
# (metric lost vs heads removed), structured_equal_speed.csv.
# Every step's result is a file under OUT, so an interrupted study resumes where it stopped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$ROOT/scripts/lib/drophead.sh"

usage="usage: $0 [--task mt|cls] [DATA (mt) | RAW (cls)] [OUT] [--arch transformer_l3_h256 | roberta_l3_h256] [--small-arch transformer_l2_h128 | roberta_l2_h128] [--max-update 700 | 400] [--seeds '1 2'] [--finetune-updates 150] [--head-finetune-updates 100] [--repeats 1] [--results docs/results] [--speed-sentences 300 (mt) | 1024 (cls)] [mt: --bleu-sentences 600] [cls: --pretrain-minutes 15] [--pretrained CKPT] [--small-pretrained CKPT]"
# Empty ones take the task's defaults (lib/structured_TASK.sh).
TASK=mt ARCH='' SMALL_ARCH='' MAX_UPDATE='' SEEDS="1 2" FINETUNE='' HEAD_FINETUNE=100 REPEATS=1 RESULTS=$ROOT/docs/results
SPEED_SENTENCES='' BLEU_SENTENCES='' PRETRAIN_MINUTES='' PRETRAINED='' SMALL_PRETRAINED=''
parse_args "$usage" "--task=TASK --arch=ARCH --small-arch=SMALL_ARCH --max-update=MAX_UPDATE --seeds=SEEDS --finetune-updates=FINETUNE --head-finetune-updates=HEAD_FINETUNE --repeats=REPEATS --results=RESULTS --speed-sentences=SPEED_SENTENCES --bleu-sentences=BLEU_SENTENCES --pretrain-minutes=PRETRAIN_MINUTES --pretrained=PRETRAINED --small-pretrained=SMALL_PRETRAINED" "$@"
[[ $TASK == mt || $TASK == cls ]] || die "--task must be mt or cls, got '$TASK'"
# shellcheck source=lib/structured_mt.sh  # (or structured_cls.sh, checked on its own)
source "$ROOT/scripts/lib/structured_$TASK.sh"
OUT=${POSITIONAL[1]:-$ROOT/checkpoints/$STUDY}
for arch in "$ARCH" "$SMALL_ARCH"; do require_arch "$arch" "plugin archs: transformer_l*_h* (mt), roberta_l*_h* (cls)"; done
for value in "$MAX_UPDATE" "$FINETUNE" "$HEAD_FINETUNE" "${SPEED_SENTENCES:-1}" "${BLEU_SENTENCES:-1}" "$REPEATS"; do
  [[ $value =~ ^[1-9][0-9]*$ ]] || die "--max-update, --finetune-updates, --head-finetune-updates, --speed-sentences, --bleu-sentences and --repeats must be positive integers, got '$value'"
done
read -r -a seeds <<< "$SEEDS"
((${#seeds[@]})) || die "--seeds: give at least one seed"
setup_task
FIRST=$OUT/models/none/seed${seeds[0]}
RESTORE=(--reset-optimizer --reset-dataloader --reset-meters --reset-lr-scheduler)

# --- 1. models ----------------------------------------------------------------------------
prepare_models
for config in none v_p0.1 v_p0.2; do
  for seed in "${seeds[@]}"; do start_job train_model "$config" "$seed"; done
done
finish_jobs
start_job train_small
BASE=$FIRST/checkpoint_best.pt

# --- 2. structured fine-tunes of the first model ------------------------------------------
# NAME=GRANULARITY:SPARSITY (fraction removed); weights50 is unstructured (nothing to shrink)
# shellcheck disable=SC2054  # the commas are in the values (head,neuron)
SPECS=(heads25=head:0.25 heads50=head:0.5 heads75=head:0.75 ffn25=neuron:0.25 ffn50=neuron:0.5 ffn75=neuron:0.75
       layers33=layer:0.34 layers67=layer:0.67 heads_ffn50=head,neuron:0.5 heads_ffn_layers50=head,neuron,layer:0.5
       weights50=weight:0.5)
finetune_masked() {  # NAME GRANULARITY SPARSITY: fine-tune BASE with the mask rising to SPARSITY, then shrink it
  local dir=$OUT/finetuned/$1
  finetune_with_mask "$dir" --prune-granularity "$2" --prune-sparsity "$3" --prune-schedule gradual \
    --prune-end-update $((FINETUNE / 2)) --prune-frequency $((FINETUNE / 10 > 0 ? FINETUNE / 10 : 1)) --prune-scope layer
  if [[ $2 != weight ]]; then
    run_once "$dir/shrink.json" fairseq-compress shrink --path "$dir/checkpoint_last.pt" --out "$dir/shrunk.pt" --force
  fi
}
for spec in "${SPECS[@]}"; do
  name=${spec%%=*} rest=${spec#*=}
  start_job finetune_masked "$name" "${rest%%:*}" "${rest#*:}"
done
# BASE is not trained to convergence: the reference of the fine-tuned ones is BASE fine-tuned as long, unmasked.
start_job finetune_from "$BASE" "$OUT/finetuned/dense" "$FINETUNE"
start_job run_once "$OUT/ipq.json" fairseq-compress ipq --path "$BASE" --out "$OUT/ipq.pt" --data "$DATA" \
  --config "$USER_DIR/config/ipq/$IPQ_CONFIG.yaml" --finetune-updates 20 --n-iter 5 --force
finish_jobs

# Contenders of 2: NAME=CHECKPOINT:PRECISION, every structured one in fp32 and int8.
CONTENDERS=("dense=$BASE:fp32" "dense_int8=$BASE:int8" "dense_ft=$OUT/finetuned/dense/checkpoint_last.pt:fp32"
            "dense_ft_int8=$OUT/finetuned/dense/checkpoint_last.pt:int8"
            "weights50=$OUT/finetuned/weights50/checkpoint_last.pt:fp32"
            "ipq=$OUT/ipq.pt:fp32" "small=$OUT/small/checkpoint_best.pt:fp32" "small_int8=$OUT/small/checkpoint_best.pt:int8")
for spec in "${SPECS[@]}"; do
  name=${spec%%=*}
  if [[ $name == weights50 ]]; then continue; fi
  CONTENDERS+=("$name=$OUT/finetuned/$name/shrunk.pt:fp32" "${name}_int8=$OUT/finetuned/$name/shrunk.pt:int8")
done
finish_jobs  # the small model, which is a contender
score_once() {  # CHECKPOINT PRECISION RESULT: the task's score JSON, int8 through --model-overrides
  local overrides=()
  if [[ $2 == int8 ]]; then overrides=(--model-overrides "{'int8_inference': True}"); fi
  run_once "$3" score "$1" "${overrides[@]}"
}
mkdir -p "$OUT/$METRIC"
for precision in fp32 int8; do  # a checkpoint's two runs write the same log: not at once
  for contender in "${CONTENDERS[@]}"; do
    name=${contender%%=*} rest=${contender#*=}
    if [[ ${rest##*:} == "$precision" ]]; then
      start_job score_once "${rest%:*}" "$precision" "$OUT/$METRIC/$name.json"
    fi
  done
  finish_jobs
done
# Speed, alone and alternating: one pass over every contender per repeat, one thread then two.
[[ -f $OUT/speed.json ]] || "$PY" "$ROOT/scripts/benchmarks/structured_race.py" --task "$TASK" --data "$SPEED_DATA" \
  --repeats "$REPEATS" "${RACE_ARGS[@]}" --out "$OUT/speed.json" "${CONTENDERS[@]}"

# --- 3. heads removed from every model, with and without a short fine-tune -----------------
remove_heads() {  # RUN_DIR: its checkpoint_best.pt shrunk to 75 / 50 / 25 % of the heads, fine-tuned or not, scored
  local run=$1 keep
  score_once "$run/checkpoint_best.pt" fp32 "$run/heads_keep1.0.json"
  for keep in 0.75 0.5 0.25; do
    run_once "$run/heads_keep$keep.shrink.json" fairseq-compress shrink --path "$run/checkpoint_best.pt" \
      --out "$run/heads_keep$keep.pt" --heads-keep "$keep" --force
    score_once "$run/heads_keep$keep.pt" fp32 "$run/heads_keep$keep.json"
    finetune_from "$run/heads_keep$keep.pt" "$run/heads_keep${keep}_ft" "$HEAD_FINETUNE"
    score_once "$run/heads_keep${keep}_ft/checkpoint_last.pt" fp32 "$run/heads_keep${keep}_ft.json"
  done
}
for config in none v_p0.1 v_p0.2; do
  for seed in "${seeds[@]}"; do start_job remove_heads "$OUT/models/$config/seed$seed"; done
done
finish_jobs

# --- results --------------------------------------------------------------------------------
"$PY" "$ROOT/scripts/lib/structured_results.py" --out "$OUT" --task "$TASK" --arch "$ARCH" --small-arch "$SMALL_ARCH" \
  --results "$RESULTS" --contenders "${CONTENDERS[@]}"
