#!/usr/bin/env bash
# Scheduled DropHead on classification: pretrain one roberta_l* masked LM on the
# shipped English text (no DropHead), then fine-tune it on the shipped cls task
# without DropHead (baseline) and with DropHead during fine-tuning (p = 0.1 and
# 0.2 on the V schedule, constant p = 0.1), the same recipe and seeds for all;
# test accuracy (checkpoint best on dev) mean +- std.
# --pretrained CKPT fine-tunes an existing roberta_l* checkpoint instead (no
# pretraining stage). Writes OUT/pretrain/, OUT/<config>/seed<N>/ and
# docs/results/drophead_cls.csv.
# Finished stages are reused, so an interrupted study resumes where it stopped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$ROOT/scripts/lib/drophead.sh"

usage="usage: $0 [RAW] [OUT] [--arch roberta_l3_h256] [--pretrain-minutes 20 | --pretrained CKPT] [--max-update 800] [--seeds '1 2 3'] [--configs '$DROPHEAD_CONFIGS']"
ARCH=roberta_l3_h256 PRETRAIN_MINUTES=20 PRETRAINED="" MAX_UPDATE=800 SEEDS="1 2 3" CONFIGS=$DROPHEAD_CONFIGS
parse_args "$usage" "--arch=ARCH --pretrain-minutes=PRETRAIN_MINUTES --pretrained=PRETRAINED --max-update=MAX_UPDATE --seeds=SEEDS --configs=CONFIGS" "$@"
RAW=${POSITIONAL[0]:-$ROOT/data-bin/raw} OUT=${POSITIONAL[1]:-$ROOT/checkpoints/drophead_cls}
read -r -a configs <<< "$CONFIGS"
require_drophead_configs "${configs[@]}"
[[ -z $PRETRAINED || -f $PRETRAINED ]] || die "--pretrained: no such checkpoint: $PRETRAINED"

bash "$ROOT/scripts/prepare_mlm.sh" "$RAW/en" "$ROOT/data-bin/en"
bash "$ROOT/scripts/prepare_glue.sh" "$RAW/cls" "$ROOT/data-bin/cls" "$ROOT/data-bin/en"
if [[ -z $PRETRAINED ]]; then
  # CPU-scale pretraining: small batches and a short warmup get the most out of minutes.
  bash "$ROOT/scripts/pretrain_mlm.sh" "$ROOT/data-bin/en" "$OUT/pretrain" --arch "$ARCH" --minutes "$PRETRAIN_MINUTES" \
    --max-tokens 2048 --warmup 200
  PRETRAINED=$OUT/pretrain/checkpoint_last.pt
fi
for config in "${configs[@]}"; do
  for seed in $SEEDS; do
    # shellcheck disable=SC2086  # the flags are words
    result=$(bash "$ROOT/scripts/finetune_cls.sh" "$ROOT/data-bin/cls" "$OUT/$config/seed$seed" --arch "$ARCH" \
      --pretrained "$PRETRAINED" --max-update "$MAX_UPDATE" --seed "$seed" \
      -- ${DROPHEAD_FLAGS[$config]})
    log "$config seed $seed: $result"
  done
done
echo "Scheduled DropHead during fine-tuning, $ARCH pretrained as $PRETRAINED, cls test accuracy:"
groups=()
for config in "${configs[@]}"; do groups+=("$config=$OUT/$config"); done
"$PY" "$ROOT/scripts/lib/summarize_runs.py" "${groups[@]}" --metric accuracy dev_accuracy --metric-file accuracy.json \
  --csv "$ROOT/docs/results/drophead_cls.csv"
