#!/usr/bin/env bash
# Quant-Noise on translation: train the same model without noise, with PQ noise
# p = 0.05 / 0.1 / 0.2 and with int8 scalar noise, then compress each with iPQ
# (fairseq-compress ipq, fine-tuning centroids between stages) and with int8
# (fairseq-compress quantize); test BLEU (detokenized sacreBLEU) and MB on disk
# of each. The paper's claim: noise during training makes the iPQ drop smaller.
# Writes OUT/<config>/seed<N>/ (checkpoints, ipq.pt, int8.pt, results.json) and
# docs/results/quant_noise.csv. Finished steps are reused, so it resumes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage="usage: $0 [DATA] [OUT] [--arch transformer_l3_h256] [--max-update 1500] [--seeds 1] [--configs 'none pq0.05 pq0.1 pq0.2 scalar0.5'] [--finetune-updates 100]"
ARCH=transformer_l3_h256 MAX_UPDATE=1500 SEEDS=1 CONFIGS="none pq0.05 pq0.1 pq0.2 scalar0.5" FINETUNE=100
parse_args "$usage" "--arch=ARCH --max-update=MAX_UPDATE --seeds=SEEDS --configs=CONFIGS --finetune-updates=FINETUNE" "$@"
DATA=${POSITIONAL[0]:-$ROOT/data-bin/en_fr} OUT=${POSITIONAL[1]:-$ROOT/checkpoints/quant_noise}
require_dir "$DATA" "DATA (prepare it with scripts/prepare_mt.sh)"
[[ $FINETUNE =~ ^[0-9]+$ ]] || die "--finetune-updates must be a non-negative integer, got '$FINETUNE'"

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

for config in "${configs[@]}"; do
  for seed in $SEEDS; do
    run=$OUT/$config/seed$seed
    # shellcheck disable=SC2086  # the flags are words
    bash "$ROOT/scripts/train_mt.sh" "$DATA" "$run" --arch "$ARCH" --max-update "$MAX_UPDATE" \
      --seed "$seed" --max-tokens 1024 --warmup 100 -- ${NOISE_FLAGS[$config]}
    ckpt=$run/checkpoint_last.pt
    run_once "$run/ipq.json" fairseq-compress ipq --path "$ckpt" --config "$USER_DIR/config/ipq/transformer.yaml" \
      --out "$run/ipq.pt" --data "$DATA" --finetune-updates "$FINETUNE" --force
    run_once "$run/int8.json" fairseq-compress quantize --path "$ckpt" --bits 8 --out "$run/int8.pt" --force
    for model in checkpoint_last ipq int8; do
      path=$run/$model.pt
      run_once "$run/bleu.$model.json" bash "$ROOT/scripts/eval_bleu.sh" "$path" "$DATA" --json
    done
    "$PY" - "$run" > "$run/results.json" <<'PY'
import json, sys
from pathlib import Path
run = Path(sys.argv[1])
read = lambda name: json.loads((run / name).read_text())
ipq, int8 = read("ipq.json"), read("int8.json")
bleu = {model: read(f"bleu.{model}.json")["bleu"] for model in ("checkpoint_last", "ipq", "int8")}
print(json.dumps({"bleu_fp32": bleu["checkpoint_last"], "bleu_ipq": bleu["ipq"], "bleu_int8": bleu["int8"],
                  "ipq_drop": round(bleu["checkpoint_last"] - bleu["ipq"], 2),
                  "mb_fp32": round(ipq["fp32_model_bytes"] / 1e6, 2), "mb_ipq": round(ipq["file_bytes"] / 1e6, 2),
                  "mb_int8": round(int8["file_bytes"] / 1e6, 2)}))
PY
    log "$config seed $seed: $(cat "$run/results.json")"
  done
done
echo "Quant-Noise, $ARCH, $MAX_UPDATE updates, EN->FR test BLEU and MB (10^6 bytes):"
groups=()
for config in "${configs[@]}"; do groups+=("$config=$OUT/$config"); done
"$PY" "$ROOT/scripts/lib/summarize_runs.py" "${groups[@]}" --metric-file results.json \
  --metric bleu_fp32 bleu_ipq ipq_drop bleu_int8 mb_fp32 mb_ipq mb_int8 --csv "$ROOT/docs/results/quant_noise.csv"
