#!/usr/bin/env bash
# ELECTRA vs masked-LM pretraining at the same wall-clock budget, then the same
# fine-tuning on the shipped cls task: electra_small scaled down to --layers
# layers (hidden 256, embedding 128, generator at 1/4) against roberta_l<L>_h256
# (the discriminator's shape) trained with the stock masked_lm criterion, and a
# no-pretraining baseline. Both pretrainings run at the same time on one core
# each, so they see the same machine load for the same minutes.
# Table: model, pretraining updates reached, tokens/s, test and dev accuracy
# mean +- std over seeds -> README; per-run rows -> docs/results/electra_vs_mlm.csv.
# Finished stages are reused, so an interrupted study resumes where it stopped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage="usage: $0 [RAW] [OUT] [--minutes 20] [--layers 3] [--max-update 800] [--seeds '1 2 3']"
MINUTES=20 LAYERS=3 MAX_UPDATE=800 SEEDS="1 2 3"
parse_args "$usage" "--minutes=MINUTES --layers=LAYERS --max-update=MAX_UPDATE --seeds=SEEDS" "$@"
RAW=${POSITIONAL[0]:-$ROOT/data-bin/raw} OUT=${POSITIONAL[1]:-$ROOT/checkpoints/electra_vs_mlm}
MLM_ARCH=roberta_l${LAYERS}_h256
require_arch "$MLM_ARCH" "--layers must be one of 2, 3, 6, 12, 18, 24"
DEPTH=(--encoder-layers "$LAYERS")

bash "$ROOT/scripts/prepare_mlm.sh" "$RAW/en" "$ROOT/data-bin/en"
bash "$ROOT/scripts/prepare_glue.sh" "$RAW/cls" "$ROOT/data-bin/cls" "$ROOT/data-bin/en"

# pretrain NAME ARGS...: pretrain_mlm.sh into OUT/NAME/pretrain on one core, in the background.
pids=()
pretrain() {
  local name=$1; shift
  OMP_NUM_THREADS=1 bash "$ROOT/scripts/pretrain_mlm.sh" "$ROOT/data-bin/en" "$OUT/$name/pretrain" \
    --minutes "$MINUTES" --max-tokens 2048 --warmup 200 "$@" &
  pids+=($!)
}
pretrain electra --arch electra_small --criterion electra -- "${DEPTH[@]}"
pretrain mlm --arch "$MLM_ARCH" --criterion masked_lm
for pid in "${pids[@]}"; do wait "$pid" || die "a pretraining run failed (logs: $OUT/*/pretrain/train.log)"; done
for name in electra mlm; do
  "$PY" "$ROOT/scripts/lib/train_stats.py" --columns "$OUT/$name/pretrain/train.log" > "$OUT/$name/group.json"
done
mkdir -p "$OUT/scratch"
echo '{"pretraining updates": 0, "tokens/s": "-"}' > "$OUT/scratch/group.json"

# finetune NAME ARCH PRETRAINED [-- fairseq-train args]: every seed.
finetune() {
  local name=$1 arch=$2 pretrained=$3 seed result; shift 3
  for seed in $SEEDS; do
    result=$(bash "$ROOT/scripts/finetune_cls.sh" "$ROOT/data-bin/cls" "$OUT/$name/seed$seed" --arch "$arch" \
      ${pretrained:+--pretrained "$pretrained"} --max-update "$MAX_UPDATE" --seed "$seed" "$@")
    log "$name seed $seed: $result"
  done
}
finetune electra electra_small "$OUT/electra/pretrain/checkpoint_last.pt" -- "${DEPTH[@]}"
finetune mlm "$MLM_ARCH" "$OUT/mlm/pretrain/checkpoint_last.pt"
finetune scratch "$MLM_ARCH" ""

echo "ELECTRA vs MLM, $MINUTES min of pretraining each (one core each, at the same time), cls fine-tuning ($MAX_UPDATE updates):"
"$PY" "$ROOT/scripts/lib/summarize_runs.py" "ELECTRA (electra_small, $LAYERS layers)=$OUT/electra" \
  "MLM ($MLM_ARCH)=$OUT/mlm" "no pretraining ($MLM_ARCH)=$OUT/scratch" \
  --metric accuracy dev_accuracy --metric-file accuracy.json --csv "$ROOT/docs/results/electra_vs_mlm.csv"
