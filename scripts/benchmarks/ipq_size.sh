#!/usr/bin/env bash
# Bytes on disk of a fully iPQ'd transformer_l6_h512 against its fp32 weights
# (the checkpoint without optimizer state). Target: >= 20x smaller.
# Without CKPT it trains transformer_l6_h512 for a few updates on DATA: the
# size does not depend on how well the model is trained.
# Prints the JSON of fairseq-compress ipq and the component table of both
# files; appends the figures to docs/results/ipq_size.csv.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

usage="usage: $0 [--ckpt CKPT] [--data data-bin/en_fr] [--out checkpoints/ipq_size]"
CKPT='' DATA=$ROOT/data-bin/en_fr OUT=$ROOT/checkpoints/ipq_size
parse_args "$usage" "--ckpt=CKPT --data=DATA --out=OUT" "$@"
mkdir -p "$OUT"
if [[ -z $CKPT ]]; then
  require_dir "$DATA" "--data (prepare it with scripts/prepare_mt.sh)"
  bash "$ROOT/scripts/train_mt.sh" "$DATA" "$OUT/train" --arch transformer_l6_h512 --max-update 20 --max-tokens 2048
  CKPT=$OUT/train/checkpoint_best.pt
fi
[[ -f $CKPT ]] || die "--ckpt $CKPT: no such file"
report=$(fairseq-compress ipq --path "$CKPT" --config "$USER_DIR/config/ipq/transformer.yaml" --out "$OUT/ipq.pt" --force)
echo "$report"
fairseq-compress size --path "$CKPT"
fairseq-compress size --path "$OUT/ipq.pt"
csv=$ROOT/docs/results/ipq_size.csv
[[ -f $csv ]] || echo "checkpoint,params,fp32_model_bytes,ipq_file_bytes,ratio_vs_fp32_model" > "$csv"
fields=$("$PY" "$ROOT/scripts/lib/json_fields.py" fp32_model_bytes file_bytes ratio_vs_fp32_model <<< "$report")
read -r fp32_bytes file_bytes ratio <<< "$fields"
echo "${CKPT#"$ROOT"/},$((fp32_bytes / 4)),$fp32_bytes,$file_bytes,$ratio" >> "$csv"
echo "iPQ file is ${ratio}x smaller than the fp32 weights (target >= 20x)"
