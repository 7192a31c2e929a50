#!/usr/bin/env bash
# Scheduled DropHead where regularization matters, on classification: pretrain one roberta_l*
# masked LM on the shipped English text (no DropHead; or --pretrained CKPT), then fine-tune it
# on the first --train-examples sentences of the shipped cls task (its full dev and test
# splits), few enough to overfit in --max-update updates: baselines with each of --dropouts,
# then DropHead p = 0.1 and 0.2 (V schedule) on top of the dropout of highest mean dev
# accuracy; --seeds each, two runs at a time (one per core). A run is scored by the test
# accuracy of its checkpoint best on dev.
# Outputs: OUT/pretrain/, OUT/examples<N>/<config>/seed<S>/ and docs/results/drophead_cls.csv.
# Finished stages are reused, so an interrupted study resumes where it stopped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$ROOT/scripts/lib/drophead.sh"

usage="usage: $0 [RAW] [OUT] [--arch roberta_l3_h256] [--pretrain-minutes 20 | --pretrained CKPT] [--train-examples 2000] [--max-update 800] [--dropouts '0.1 0.3'] [--seeds '1 2 3']"
ARCH=roberta_l3_h256 PRETRAIN_MINUTES=20 PRETRAINED="" TRAIN_EXAMPLES=2000 MAX_UPDATE=800 DROPOUTS="0.1 0.3" SEEDS="1 2 3"
parse_args "$usage" "--arch=ARCH --pretrain-minutes=PRETRAIN_MINUTES --pretrained=PRETRAINED --train-examples=TRAIN_EXAMPLES --max-update=MAX_UPDATE --dropouts=DROPOUTS --seeds=SEEDS" "$@"
RAW=${POSITIONAL[0]:-$ROOT/data-bin/raw} OUT=${POSITIONAL[1]:-$ROOT/checkpoints/drophead_cls}
require_dir "$RAW/cls" "RAW/cls (the shipped corpus is data-bin/raw)"
[[ -z $PRETRAINED || -f $PRETRAINED ]] || die "--pretrained: no such checkpoint: $PRETRAINED"
for value in "$TRAIN_EXAMPLES" "$MAX_UPDATE"; do
  [[ $value =~ ^[1-9][0-9]*$ ]] || die "--train-examples and --max-update must be positive integers, got '$value'"
done
require_dropouts
WORK=$OUT/examples$TRAIN_EXAMPLES DATA=$OUT/examples$TRAIN_EXAMPLES/bin

bash "$ROOT/scripts/prepare_mlm.sh" "$RAW/en" "$ROOT/data-bin/en"
if [[ ! -d $WORK/raw ]]; then  # the subset (the shipped train.tsv is shuffled), with the header line
  rm -rf "$WORK/raw.tmp" && mkdir -p "$WORK/raw.tmp"
  read_text "$(require_input "$RAW/cls" train.tsv)" | awk -v n="$TRAIN_EXAMPLES" 'NR <= n + 1' > "$WORK/raw.tmp/train.tsv"
  for split in dev test; do read_text "$(require_input "$RAW/cls" "$split.tsv")" > "$WORK/raw.tmp/$split.tsv"; done
  mv "$WORK/raw.tmp" "$WORK/raw"
fi
bash "$ROOT/scripts/prepare_glue.sh" "$WORK/raw" "$DATA" "$ROOT/data-bin/en"
if [[ -z $PRETRAINED ]]; then
  # CPU-scale pretraining: small batches and a short warmup get the most out of minutes.
  bash "$ROOT/scripts/pretrain_mlm.sh" "$ROOT/data-bin/en" "$OUT/pretrain" --arch "$ARCH" --minutes "$PRETRAIN_MINUTES" \
    --max-tokens 2048 --warmup 200
  PRETRAINED=$OUT/pretrain/checkpoint_last.pt
fi

# finetune CONFIG SEED [fairseq-train args]: one fine-tuning into WORK/CONFIG/seedSEED.
finetune() {
  local run=$WORK/$1/seed$2 seed=$2
  shift 2
  log "$run: $(bash "$ROOT/scripts/finetune_cls.sh" "$DATA" "$run" --arch "$ARCH" --pretrained "$PRETRAINED" \
    --max-update "$MAX_UPDATE" --seed "$seed" -- "$@")"
}

drophead_study finetune dev_accuracy accuracy.json max

echo "Scheduled DropHead during fine-tuning on $TRAIN_EXAMPLES cls sentences, $ARCH pretrained as $PRETRAINED, test accuracy:"
"$PY" -m fairseq_compress.studies.summarize_runs "${STUDY_GROUPS[@]}" --metric accuracy dev_accuracy --metric-file accuracy.json \
  --csv "$ROOT/docs/results/drophead_cls.csv"
