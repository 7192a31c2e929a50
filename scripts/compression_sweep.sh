#!/usr/bin/env bash
# Train Large, Then Compress (Li et al. 2020), at this machine's scale: for each
# trained model (CKPT_DIR/checkpoint_best.pt; translation or sentence classification),
#   - quantize to each of --bits (fairseq-compress quantize),
#   - prune one-shot to each of --sparsities (fairseq-compress prune, fp16 nonzeros),
#   - prune gradually while fine-tuning --finetune-updates updates (the *_pruning
#     task, cubic schedule over the first 2/3), then store it sparse,
# evaluate each file with the stock fairseq tools (test BLEU for MT, accuracy for
# classification) and write a CSV (model, method, sparsity, bits, MB on disk,
# metric) and a PNG of metric vs MB, one line per original model: the paper's figure.
# Every output is reused when present, so an interrupted sweep resumes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage="usage: $0 CKPT_DIR... [--out checkpoints/compression_sweep] [--data DIR] [--sparsities '0.3 0.5 0.7 0.9'] [--bits '8 6 4'] [--finetune-updates 300] [--methods 'quantize oneshot gradual'] [--csv docs/results/compression_sweep.csv]"
OUT=$ROOT/checkpoints/compression_sweep DATA_OVERRIDE='' SPARSITIES="0.3 0.5 0.7 0.9" BITS="8 6 4" FINETUNE=300
METHODS="quantize oneshot gradual" CSV=$ROOT/docs/results/compression_sweep.csv
parse_args "$usage" "--out=OUT --data=DATA_OVERRIDE --sparsities=SPARSITIES --bits=BITS --finetune-updates=FINETUNE --methods=METHODS --csv=CSV" "$@"
((${#POSITIONAL[@]} >= 1)) || die "$usage"
[[ $FINETUNE =~ ^[1-9][0-9]*$ ]] || die "--finetune-updates must be a positive integer, got '$FINETUNE'"
for method in $METHODS; do
  [[ $method =~ ^(quantize|oneshot|gradual)$ ]] || die "--methods: unknown method '$method' (known: quantize oneshot gradual)"
done
for dir in "${POSITIONAL[@]}"; do
  [[ -f $dir/checkpoint_best.pt ]] || die "CKPT_DIR $dir holds no checkpoint_best.pt"
done

# describe FILE MODEL METHOD SPARSITY BITS: FILE.result.json with its size and metric (once).
describe() {
  local file=$1 base=${1%.pt}
  if [[ $TASK == translation ]]; then
    run_once "$base.metric.json" bash "$ROOT/scripts/eval_bleu.sh" "$file" "$DATA" --json
  else
    run_once "$base.metric.json" bash "$ROOT/scripts/eval_cls.sh" "$file" "$DATA"
  fi
  run_once "$base.size.json" fairseq-compress size --json --path "$file"
  run_once "$base.result.json" "$PY" "$ROOT/scripts/lib/compression_row.py" --size "$base.size.json" \
    --metric "$base.metric.json" --model "$2" --method "$3" --sparsity "$4" --bits "$5"
}

# gradual_finetune CKPT SAVE SPARSITY: fine-tune with the pruning task, schedule over the first 2/3.
gradual_finetune() {
  local ckpt=$1 save=$2 sparsity=$3
  local prune=(--prune-sparsity "$sparsity" --prune-schedule gradual --prune-start-update 0
    --prune-end-update $((FINETUNE * 2 / 3)) --prune-frequency $(((FINETUNE + 9) / 10))
    --restore-file "$(realpath "$ckpt")" --reset-optimizer --reset-dataloader --reset-meters --reset-lr-scheduler)
  if [[ $TASK == translation ]]; then
    bash "$ROOT/scripts/train_mt.sh" "$DATA" "$save" --arch "$ARCH" --max-update "$FINETUNE" --lr 0.0005 \
      --warmup 1 --max-tokens 2048 -- --task translation_pruning "${prune[@]}"
  else
    bash "$ROOT/scripts/finetune_cls.sh" "$DATA" "$save" --arch "$ARCH" --max-update "$FINETUNE" --lr 1e-5 \
      -- --task sentence_prediction_pruning "${prune[@]}" > /dev/null
  fi
}

for dir in "${POSITIONAL[@]}"; do
  ckpt=$dir/checkpoint_best.pt
  read -r TASK ARCH DATA <<< "$(fairseq-compress info --path "$ckpt")"
  [[ $TASK =~ ^(translation|sentence_prediction)$ ]] || die "$ckpt: task $TASK is not translation or sentence_prediction"
  [[ $DATA = /* ]] || DATA=$ROOT/$DATA
  DATA=${DATA_OVERRIDE:-$DATA}
  require_dir "$DATA" "the data of $ckpt (pass --data)"
  model=$(basename "$dir") work=$OUT/$(basename "$dir")
  mkdir -p "$work"
  log "$model ($ARCH, $TASK on $DATA)"
  [[ -f $work/original.pt ]] || ln -sf "$(realpath "$ckpt")" "$work/original.pt"
  describe "$work/original.pt" "$model" original 0 32
  for method in $METHODS; do
    case $method in
      quantize)
        for bits in $BITS; do
          out=$work/int$bits.pt
          [[ -f $out ]] || fairseq-compress quantize --path "$ckpt" --bits "$bits" --out "$out" > /dev/null
          describe "$out" "$model" quantize 0 "$bits"
        done ;;
      oneshot)
        for sparsity in $SPARSITIES; do
          out=$work/oneshot_s$sparsity.pt
          [[ -f $out ]] || fairseq-compress prune --path "$ckpt" --sparsity "$sparsity" --out "$out" > /dev/null
          describe "$out" "$model" oneshot "$sparsity" 16
        done ;;
      gradual)
        for sparsity in $SPARSITIES; do
          out=$work/gradual_s$sparsity.pt
          if [[ ! -f $out ]]; then
            gradual_finetune "$ckpt" "$work/gradual_s$sparsity" "$sparsity"
            fairseq-compress prune --path "$work/gradual_s$sparsity/checkpoint_last.pt" --sparsity "$sparsity" \
              --out "$out" > /dev/null
          fi
          describe "$out" "$model" gradual "$sparsity" 16
        done ;;
    esac
  done
done
"$PY" "$ROOT/scripts/lib/compression_plot.py" "$OUT" --csv "$CSV" --png "${CSV%.csv}.png"
