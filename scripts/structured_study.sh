#!/usr/bin/env bash
# Structured compression on translation (issue 18): what removing heads, FFN neurons and layers
# buys in speed and costs in BLEU, whether DropHead makes heads removable, and the Train-Large
# question at equal speed. On DATA (scripts/prepare_mt.sh), ARCH trained for --max-update
# updates with the demo's recipe:
#  1. models: ARCH without DropHead and with DropHead p = 0.1 / 0.2 (V schedule), --seeds each;
#     and --small-arch, trained for as long (wall-clock) as ARCH's first run.
#  2. speed vs fraction kept: from ARCH (no DropHead, first seed), a --finetune-updates
#     fine-tune with each structured mask (--prune-granularity head / neuron / layer, then
#     combined; gradual schedule), shrunk (fairseq-compress shrink); plus unstructured weight
#     pruning and iPQ for the plot. BLEU of each (fp32 and int8) on the first --bleu-sentences
#     test pairs; sentences/s of fairseq-generate on the first --speed-sentences, one thread
#     and two, alternating every contender in one pass (nothing else running).
#  3. DropHead makes heads removable: every model of 1 shrunk to 75 / 50 / 25 % of its heads,
#     without fine-tuning and with --head-finetune-updates of it; BLEU on the same test pairs.
#  4. equal speed: the best compressed ARCH at least as fast as --small-arch, against it.
# Outputs (--results, default docs/results): structured_{speed,heads}.csv, structured_speed.png (BLEU vs
# sentences/s), structured_heads.png (BLEU drop vs heads removed), structured_equal_speed.csv.
# Every step's result is a file under OUT, so an interrupted study resumes where it stopped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$ROOT/scripts/lib/drophead.sh"

usage="usage: $0 [DATA] [OUT] [--arch transformer_l3_h256] [--small-arch transformer_l2_h128] [--max-update 700] [--seeds '1 2'] [--finetune-updates 150] [--head-finetune-updates 100] [--speed-sentences 300] [--bleu-sentences 600] [--repeats 1] [--results docs/results]"
ARCH=transformer_l3_h256 SMALL_ARCH=transformer_l2_h128 MAX_UPDATE=700 SEEDS="1 2" FINETUNE=150 HEAD_FINETUNE=100
SPEED_SENTENCES=300 BLEU_SENTENCES=600 REPEATS=1 RESULTS=$ROOT/docs/results
parse_args "$usage" "--arch=ARCH --small-arch=SMALL_ARCH --max-update=MAX_UPDATE --seeds=SEEDS --finetune-updates=FINETUNE --head-finetune-updates=HEAD_FINETUNE --speed-sentences=SPEED_SENTENCES --bleu-sentences=BLEU_SENTENCES --repeats=REPEATS --results=RESULTS" "$@"
DATA=${POSITIONAL[0]:-$ROOT/data-bin/en_fr} OUT=${POSITIONAL[1]:-$ROOT/checkpoints/structured_study}
require_dir "$DATA" "DATA (prepare it with scripts/prepare_mt.sh)"
for arch in "$ARCH" "$SMALL_ARCH"; do require_arch "$arch" "plugin archs: transformer_l{2,3,6,12,18,24}_h{128,256,512,768,1024}"; done
for value in "$MAX_UPDATE" "$FINETUNE" "$HEAD_FINETUNE" "$SPEED_SENTENCES" "$BLEU_SENTENCES" "$REPEATS"; do
  [[ $value =~ ^[1-9][0-9]*$ ]] || die "--max-update, --finetune-updates, --head-finetune-updates, --speed-sentences, --bleu-sentences and --repeats must be positive integers, got '$value'"
done
read -r -a seeds <<< "$SEEDS"
((${#seeds[@]})) || die "--seeds: give at least one seed"
RECIPE=(--max-tokens 1024 --warmup 100 --lr 0.002)
FIRST=$OUT/models/none/seed${seeds[0]}

# --- 1. models ----------------------------------------------------------------------------
train_model() {  # CONFIG SEED
  local flags=${DROPHEAD_FLAGS[$1]:-}
  # shellcheck disable=SC2086  # the flags are words
  bash "$ROOT/scripts/train_mt.sh" "$DATA" "$OUT/models/$1/seed$2" --arch "$ARCH" --max-update "$MAX_UPDATE" \
    --seed "$2" "${RECIPE[@]}" -- $flags
}
train_small() {  # as many minutes of training as ARCH's first run took (fairseq's train_wall)
  local seconds minutes
  seconds=$("$PY" "$ROOT/scripts/lib/train_stats.py" "$FIRST/train.log" --seconds-per-update)
  minutes=$(awk -v s="$seconds" -v n="$MAX_UPDATE" 'BEGIN { printf "%.2f", s * n / 60 }')
  bash "$ROOT/scripts/train_mt.sh" "$DATA" "$OUT/small" --arch "$SMALL_ARCH" --minutes "$minutes" "${RECIPE[@]}"
}
for config in none v_p0.1 v_p0.2; do
  for seed in "${seeds[@]}"; do start_job train_model "$config" "$seed"; done
done
finish_jobs
start_job train_small
BASE=$FIRST/checkpoint_best.pt

# --- 2. structured fine-tunes of the first model ------------------------------------------
# NAME=GRANULARITY:SPARSITY (fraction removed); weights50 is unstructured (nothing to shrink)
SPECS=(heads25=head:0.25 heads50=head:0.5 heads75=head:0.75 ffn25=neuron:0.25 ffn50=neuron:0.5 ffn75=neuron:0.75
       layers33=layer:0.34 layers67=layer:0.67 heads_ffn50=head,neuron:0.5 heads_ffn_layers50=head,neuron,layer:0.5
       weights50=weight:0.5)
RESTORE=(--reset-optimizer --reset-dataloader --reset-meters --reset-lr-scheduler)
finetune_masked() {  # NAME GRANULARITY SPARSITY: fine-tune BASE with the mask rising to SPARSITY, then shrink it
  local dir=$OUT/finetuned/$1
  bash "$ROOT/scripts/train_mt.sh" "$DATA" "$dir" --arch "$ARCH" --max-update "$FINETUNE" --max-tokens 1024 \
    --lr 0.0005 --warmup 1 -- --task translation_pruning --prune-granularity "$2" --prune-sparsity "$3" \
    --prune-schedule gradual --prune-end-update $((FINETUNE / 2)) --prune-frequency $((FINETUNE / 10 > 0 ? FINETUNE / 10 : 1)) \
    --prune-scope layer --restore-file "$BASE" "${RESTORE[@]}"
  if [[ $2 != weight ]]; then
    run_once "$dir/shrink.json" fairseq-compress shrink --path "$dir/checkpoint_last.pt" --out "$dir/shrunk.pt" --force
  fi
}
for spec in "${SPECS[@]}"; do
  name=${spec%%=*} rest=${spec#*=}
  start_job finetune_masked "$name" "${rest%%:*}" "${rest#*:}"
done
start_job run_once "$OUT/ipq.json" fairseq-compress ipq --path "$BASE" --out "$OUT/ipq.pt" --data "$DATA" \
  --config "$USER_DIR/config/ipq/transformer.yaml" --finetune-updates 20 --n-iter 5 --force
finish_jobs

# test_subset N: DIR of the first N test pairs of DATA, binarized with its dictionaries.
test_subset() {
  local dir=$OUT/test$1 dict lang pair
  if [[ ! -d $dir ]]; then
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp/raw"
    for dict in "$DATA"/dict.*.txt; do
      lang=${dict##*/dict.} lang=${lang%.txt}
      head -n "$1" "$DATA/raw/test.$lang" > "$dir.tmp/raw/test.$lang"
      "$PY" "$ROOT/scripts/lib/spm.py" encode --model "$DATA/spm.model" < "$dir.tmp/raw/test.$lang" > "$dir.tmp/test.sp.$lang"
    done
    pair=$(basename "$(ls "$DATA"/test.*-*.*.bin | head -n 1)" | cut -d. -f2)
    fairseq-preprocess --source-lang "${pair%-*}" --target-lang "${pair#*-}" --testpref "$dir.tmp/test.sp" \
      --srcdict "$DATA/dict.${pair%-*}.txt" --tgtdict "$DATA/dict.${pair#*-}.txt" --destdir "$dir.tmp" \
      --workers 1 > "$dir.tmp/preprocess.log" 2>&1 || die "fairseq-preprocess of a test subset failed ($dir.tmp/preprocess.log)"
    cp "$DATA/spm.model" "$dir.tmp/"
    mv "$dir.tmp" "$dir"
  fi
  echo "$dir"
}
SUBSET=$(test_subset "$SPEED_SENTENCES") BLEU_SUBSET=$(test_subset "$BLEU_SENTENCES")

# Contenders of 2: NAME=CHECKPOINT:PRECISION, every structured one in fp32 and int8.
CONTENDERS=(dense=$BASE:fp32 dense_int8=$BASE:int8 weights50=$OUT/finetuned/weights50/checkpoint_last.pt:fp32
            ipq=$OUT/ipq.pt:fp32 small=$OUT/small/checkpoint_best.pt:fp32 small_int8=$OUT/small/checkpoint_best.pt:int8)
for spec in "${SPECS[@]}"; do
  name=${spec%%=*}
  if [[ $name == weights50 ]]; then continue; fi
  CONTENDERS+=("$name=$OUT/finetuned/$name/shrunk.pt:fp32" "${name}_int8=$OUT/finetuned/$name/shrunk.pt:int8")
done
finish_jobs  # the small model, which is a contender
bleu_of() {  # NAME CHECKPOINT PRECISION DATA_DIR RESULT: eval_bleu.sh's JSON, int8 through --model-overrides
  local overrides=()
  if [[ $3 == int8 ]]; then overrides=(-- --model-overrides "{'int8_inference': True}"); fi
  run_once "$5" bash "$ROOT/scripts/eval_bleu.sh" "$2" "$4" --json "${overrides[@]}"
}
mkdir -p "$OUT/bleu"
for precision in fp32 int8; do  # a checkpoint's two runs write the same hypothesis file: not at once
  for contender in "${CONTENDERS[@]}"; do
    name=${contender%%=*} rest=${contender#*=}
    if [[ ${rest##*:} == "$precision" ]]; then
      start_job bleu_of "$name" "${rest%:*}" "$precision" "$BLEU_SUBSET" "$OUT/bleu/$name.json"
    fi
  done
  finish_jobs
done
# Speed, alone and alternating: one pass over every contender per repeat, one thread then two.
[[ -f $OUT/speed.json ]] || "$PY" "$ROOT/scripts/benchmarks/structured_race.py" --data "$SUBSET" --repeats "$REPEATS" \
  --out "$OUT/speed.json" "${CONTENDERS[@]}"

# --- 3. heads removed from every model, with and without a short fine-tune -----------------
remove_heads() {  # RUN_DIR: its checkpoint_best.pt shrunk to 75 / 50 / 25 % of the heads, fine-tuned or not, scored
  local run=$1 keep
  bleu_of original "$run/checkpoint_best.pt" fp32 "$BLEU_SUBSET" "$run/heads_keep1.0.json"
  for keep in 0.75 0.5 0.25; do
    run_once "$run/heads_keep$keep.shrink.json" fairseq-compress shrink --path "$run/checkpoint_best.pt" \
      --out "$run/heads_keep$keep.pt" --heads-keep "$keep" --force
    bleu_of removed "$run/heads_keep$keep.pt" fp32 "$BLEU_SUBSET" "$run/heads_keep$keep.json"
    bash "$ROOT/scripts/train_mt.sh" "$DATA" "$run/heads_keep${keep}_ft" --arch "$ARCH" --max-update "$HEAD_FINETUNE" \
      --max-tokens 1024 --lr 0.0005 --warmup 1 -- --restore-file "$run/heads_keep$keep.pt" "${RESTORE[@]}"
    bleu_of finetuned "$run/heads_keep${keep}_ft/checkpoint_last.pt" fp32 "$BLEU_SUBSET" "$run/heads_keep${keep}_ft.json"
  done
}
for config in none v_p0.1 v_p0.2; do
  for seed in "${seeds[@]}"; do start_job remove_heads "$OUT/models/$config/seed$seed"; done
done
finish_jobs

# --- results --------------------------------------------------------------------------------
"$PY" "$ROOT/scripts/lib/structured_results.py" --out "$OUT" --arch "$ARCH" --small-arch "$SMALL_ARCH" \
  --results "$RESULTS" --contenders "${CONTENDERS[@]}"
