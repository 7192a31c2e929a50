#!/usr/bin/env bash
# ELECTRA vs masked-LM pretraining at the same wall-clock budget, then the same
# fine-tuning on the shipped cls task: electra_small scaled down to --layers
# layers (hidden 256, embedding 128, generator at 1/4) against roberta_l<L>_h256
# (the discriminator's shape) trained with the stock masked_lm criterion, and a
# no-pretraining baseline. Both pretrainings run at the same time on one core
# each, so they see the same machine load for the same minutes, with the paper's
# schedule: warmup over 10 % of the updates, then linear decay to 0 (AdamW, weight
# decay 0.01, lr 5e-4). Linear decay needs the number of updates up front, so a short
# calibration run of each (also side by side) measures its seconds per update and
# sets that number to what fits in --minutes.
# Outputs: curves of the discriminator's accuracy on replaced tokens and of the
# generator's / masked LM's perplexity (docs/results/electra_vs_mlm_curves.{csv,png});
# table: model, pretraining updates reached, tokens/s, test and dev accuracy
# mean +- std over seeds -> docs; per-run rows -> docs/results/electra_vs_mlm.csv.
# Finished stages are reused, so an interrupted study resumes where it stopped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage="usage: $0 [RAW] [OUT] [--minutes 60] [--layers 3] [--calibration-updates 150] [--max-update 800] [--seeds '1 2 3']"
MINUTES=60 LAYERS=3 CALIBRATION=150 MAX_UPDATE=800 SEEDS="1 2 3"
parse_args "$usage" "--minutes=MINUTES --layers=LAYERS --calibration-updates=CALIBRATION --max-update=MAX_UPDATE --seeds=SEEDS" "$@"
RAW=${POSITIONAL[0]:-$ROOT/data-bin/raw} OUT=${POSITIONAL[1]:-$ROOT/checkpoints/electra_vs_mlm}
MLM_ARCH=roberta_l${LAYERS}_h256
require_arch "$MLM_ARCH" "--layers must be one of 2, 3, 6, 12, 18, 24"
[[ $MINUTES =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--minutes must be a positive number, got '$MINUTES'"
[[ $CALIBRATION =~ ^[1-9][0-9]*$ && $CALIBRATION -ge 50 ]] || die "--calibration-updates must be an integer >= 50, got '$CALIBRATION'"
DEPTH="--encoder-layers $LAYERS"
declare -A MODEL=([electra]="--arch electra_small --criterion electra" [mlm]="--arch $MLM_ARCH --criterion masked_lm")
declare -A UPDATES

bash "$ROOT/scripts/prepare_mlm.sh" "$RAW/en" "$ROOT/data-bin/en"
bash "$ROOT/scripts/prepare_glue.sh" "$RAW/cls" "$ROOT/data-bin/cls" "$ROOT/data-bin/en"

# stage_args NAME STAGE: the pretrain_mlm.sh flags, then after -- the fairseq-train ones, of model NAME in STAGE.
stage_args() {
  local n=$CALIBRATION schedule=inverse_sqrt depth=''
  [[ $2 == pretrain ]] && n=${UPDATES[$1]} schedule=linear
  [[ $1 == electra ]] && depth=$DEPTH
  echo "${MODEL[$1]} --max-tokens 2048 --lr 0.0005 --schedule $schedule --max-update $n --warmup $((n / 10))" \
    "-- $depth --log-interval 25 --save-interval-updates $(((n + 9) / 10))"
}

# side_by_side STAGE: pretrain_mlm.sh of both models into OUT/NAME/STAGE, one core each, at the same time.
side_by_side() {
  local name pids=()
  for name in electra mlm; do
    # shellcheck disable=SC2046  # stage_args prints words
    OMP_NUM_THREADS=1 bash "$ROOT/scripts/pretrain_mlm.sh" "$ROOT/data-bin/en" "$OUT/$name/$1" $(stage_args "$name" "$1") &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || die "a $1 run failed (logs: $OUT/*/$1/train.log)"; done
}

side_by_side calibration
for name in electra mlm; do
  spu=$("$PY" -m fairseq_compress.studies.train_stats --seconds-per-update "$OUT/$name/calibration/train.log")
  UPDATES[$name]=$("$PY" -c "import sys; print(int(float(sys.argv[1]) * 60 / float(sys.argv[2])))" "$MINUTES" "$spu")
  log "$name: $spu s/update side by side -> ${UPDATES[$name]} updates in $MINUTES min"
done
side_by_side pretrain
"$PY" "$ROOT/scripts/lib/pretraining_curves.py" --electra "$OUT/electra/pretrain/train.log" \
  --mlm "$OUT/mlm/pretrain/train.log" --csv "$ROOT/docs/results/electra_vs_mlm_curves.csv" \
  --png "$ROOT/docs/results/electra_vs_mlm_curves.png"
for name in electra mlm; do
  "$PY" -m fairseq_compress.studies.train_stats --columns "$OUT/$name/pretrain/train.log" > "$OUT/$name/group.json"
done
mkdir -p "$OUT/scratch"
echo '{"pretraining updates": 0, "tokens/s": "-"}' > "$OUT/scratch/group.json"

# finetune NAME ARCH PRETRAINED SEED [-- fairseq-train args]: one fine-tuning, on one core.
finetune() {
  local name=$1 arch=$2 pretrained=$3 seed=$4 result; shift 4
  result=$(bash "$ROOT/scripts/finetune_cls.sh" "$ROOT/data-bin/cls" "$OUT/$name/seed$seed" \
    --arch "$arch" ${pretrained:+--pretrained "$pretrained"} --max-update "$MAX_UPDATE" --seed "$seed" "$@")
  log "$name seed $seed: $result"
}
# Every fine-tuning queued two at a time (one per core): the pretrained models seed by seed, then the baseline.
for seed in $SEEDS; do
  # shellcheck disable=SC2086
  start_job finetune electra electra_small "$OUT/electra/pretrain/checkpoint_last.pt" "$seed" -- $DEPTH
  start_job finetune mlm "$MLM_ARCH" "$OUT/mlm/pretrain/checkpoint_last.pt" "$seed"
done
for seed in $SEEDS; do start_job finetune scratch "$MLM_ARCH" "" "$seed"; done
finish_jobs

echo "ELECTRA vs MLM, $MINUTES min of pretraining each (one core each, at the same time, linear decay), cls fine-tuning ($MAX_UPDATE updates):"
"$PY" -m fairseq_compress.studies.summarize_runs "ELECTRA (electra_small, $LAYERS layers)=$OUT/electra" \
  "MLM ($MLM_ARCH)=$OUT/mlm" "no pretraining ($MLM_ARCH)=$OUT/scratch" \
  --metric accuracy dev_accuracy --metric-file accuracy.json --csv "$ROOT/docs/results/electra_vs_mlm.csv"
