#!/usr/bin/env bash
# Quant-Noise on translation: train the same model without noise, with PQ noise
# p = 0.1 / 0.2 and with int8 scalar noise, --seeds each, two runs at a time (one per core);
# then compress each with iPQ (fairseq-compress ipq, fine-tuning the centroids between stages),
# once with the task loss alone and once with --distill (KL to the uncompressed model), and
# with int8 (fairseq-compress quantize); test BLEU (detokenized sacreBLEU) and MB on disk of
# each. The paper's claim: noise during training makes the iPQ drop smaller; what it costs is
# the fp32 BLEU of the noised model against the one trained without noise.
# Writes OUT/<config>/seed<N>/ (checkpoints, ipq.pt, ipq_distill.pt, int8.pt, results.json) and
# docs/results/quant_noise.csv and .png (BLEU of each model per config, mean and std over seeds;
# --csv names another CSV, and the plot goes beside it, so a study at another --max-update keeps
# the first one's results). Finished steps are reused, so it resumes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage="usage: $0 [DATA] [OUT] [--arch transformer_l3_h256] [--max-update 1600] [--seeds '1 2'] [--configs 'none pq0.1 pq0.2 scalar0.5'] [--finetune-updates 100] [--csv docs/results/quant_noise.csv]"
ARCH=transformer_l3_h256 MAX_UPDATE=1600 SEEDS="1 2" CONFIGS="none pq0.1 pq0.2 scalar0.5" FINETUNE=100 CSV=$ROOT/docs/results/quant_noise.csv
parse_args "$usage" "--arch=ARCH --max-update=MAX_UPDATE --seeds=SEEDS --configs=CONFIGS --finetune-updates=FINETUNE --csv=CSV" "$@"
DATA=${POSITIONAL[0]:-$ROOT/data-bin/en_fr} OUT=${POSITIONAL[1]:-$ROOT/checkpoints/quant_noise}
require_dir "$DATA" "DATA (prepare it with scripts/prepare_mt.sh)"
[[ $FINETUNE =~ ^[1-9][0-9]*$ ]] || die "--finetune-updates must be a positive integer (--distill fine-tunes), got '$FINETUNE'"
[[ $CSV == *.csv && -d $(dirname "$CSV") ]] || die "--csv must name a .csv file in an existing directory, got '$CSV'"

QN="--criterion quant_noise --qn-criterion label_smoothed_cross_entropy --qn-block-size 8"
declare -A NOISE_FLAGS=(
  [none]=""
  [pq0.05]="$QN --qn-pq 0.05"
  [pq0.1]="$QN --qn-pq 0.1"
  [pq0.2]="$QN --qn-pq 0.2"
  [scalar0.5]="$QN --qn-scalar 0.5 --qn-bits 8"
)
read -r -a configs <<< "$CONFIGS"
for config in "${configs[@]}"; do
  [[ -v NOISE_FLAGS[$config] ]] || die "--configs: unknown config '$config' (known: ${!NOISE_FLAGS[*]})"
done

# train_and_compress CONFIG SEED: one run into OUT/CONFIG/seedSEED, compressed three ways and scored.
train_and_compress() {
  local config=$1 seed=$2 run=$OUT/$1/seed$2 ckpt model
  # shellcheck disable=SC2086  # the flags are words
  bash "$ROOT/scripts/train_mt.sh" "$DATA" "$run" --arch "$ARCH" --max-update "$MAX_UPDATE" \
    --seed "$seed" --max-tokens 1024 --warmup 100 -- ${NOISE_FLAGS[$config]}
  ckpt=$run/checkpoint_last.pt
  run_once "$run/ipq.json" fairseq-compress ipq --path "$ckpt" --config "$USER_DIR/config/ipq/transformer.yaml" \
    --out "$run/ipq.pt" --data "$DATA" --finetune-updates "$FINETUNE" --force
  run_once "$run/ipq_distill.json" fairseq-compress ipq --path "$ckpt" --config "$USER_DIR/config/ipq/transformer.yaml" \
    --out "$run/ipq_distill.pt" --data "$DATA" --finetune-updates "$FINETUNE" --distill --force
  run_once "$run/int8.json" fairseq-compress quantize --path "$ckpt" --bits 8 --out "$run/int8.pt" --force
  for model in checkpoint_last ipq ipq_distill int8; do
    run_once "$run/bleu.$model.json" bash "$ROOT/scripts/eval_bleu.sh" "$run/$model.pt" "$DATA" --json
  done
  run_once "$run/results.json" "$PY" "$ROOT/scripts/lib/quant_noise_results.py" "$run"
  log "$config seed $seed: $(cat "$run/results.json")"
}

for config in "${configs[@]}"; do
  for seed in $SEEDS; do start_job train_and_compress "$config" "$seed"; done
done
finish_jobs
echo "Quant-Noise, $ARCH, $MAX_UPDATE updates, EN->FR test BLEU and MB (10^6 bytes):"
groups=()
for config in "${configs[@]}"; do groups+=("$config=$OUT/$config"); done
"$PY" -m fairseq_compress.studies.summarize_runs "${groups[@]}" --metric-file results.json \
  --metric bleu_fp32 bleu_ipq ipq_drop bleu_ipq_distill ipq_distill_drop bleu_int8 mb_fp32 mb_ipq mb_int8 --csv "$CSV"
"$PY" "$ROOT/scripts/lib/quant_noise_plot.py" "$CSV" "${CSV%.csv}.png"
