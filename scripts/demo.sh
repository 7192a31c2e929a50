#!/usr/bin/env bash
# The main job, end to end on the corpus shipped in data-bin/raw: prepare EN-FR -> train
# transformer_l3_h256 for a wall-clock budget -> compress it (int8; heads and FFN neurons
# removed with fairseq-compress shrink, then fine-tuned; the same + int8; iPQ) -> deploy the
# small one to CTranslate2 int8. Every artifact is translated on the test split (beam 5, one
# thread, one pass each, two at a time) and the table has its BLEU with signature, MB on disk
# and sentences/s: docs/results/demo.{csv,png}. Rerunning reuses every finished stage. The
# stages share the 15 minutes: training is what gives way (the evaluation of every row stays whole).
# Knobs: DEMO_ARCH, DEMO_MINUTES, DEMO_FINETUNE_UPDATES, DEMO_OUT. fairseq_compress/studies/drophead.py holds the
# DropHead comparison; scripts/benchmarks/deploy_speed.py the alternating speed measurement.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
source "$ROOT/scripts/lib/common.sh"
cd "$ROOT"

ARCH=${DEMO_ARCH:-transformer_l3_h256}
MINUTES=${DEMO_MINUTES:-3.5}
FINETUNE_UPDATES=${DEMO_FINETUNE_UPDATES:-200}
DATA=data-bin/en_fr
OUT=${DEMO_OUT:-checkpoints/demo}
TABLE=$OUT/results.jsonl
mkdir -p "$OUT"
INT8=(--model-overrides "{'int8_inference': True}")

bash scripts/prepare_mt.sh data-bin/raw/en_fr "$DATA"

# The translation recipe, fairseq_compress/config/mt_en_fr.yaml, for MINUTES of training time.
bash scripts/train_mt.sh "$DATA" "$OUT/dense" --arch "$ARCH" --minutes "$MINUTES"
DENSE=$OUT/dense/checkpoint_best.pt

# once OUT_FILE CMD...: CMD (which writes OUT_FILE) unless OUT_FILE is there.
once() { [[ -e $1 ]] || "${@:2}"; }

# evaluate PATH [int8]: PATH's test BLEU and speed into PATH.bleu.json (redone when PATH is newer);
# eval_bleu.sh keeps PATH's hypotheses and translation log beside it.
evaluate() {
  local json=${1%.pt}.bleu.json extra=()
  [[ ${2:-} == int8 ]] && extra=(-- "${INT8[@]}")
  if [[ -f $json && ! $json -nt $1 ]]; then rm "$json"; fi
  run_once "$json" bash scripts/eval_bleu.sh "$1" "$DATA" --json "${extra[@]}"
}

SHRUNK=$OUT/shrunk_ft/checkpoint_last.pt
# Two chains, one core each, so that compression and evaluation overlap.
# The dense model: fp32, int8 in fairseq-generate, iPQ.
dense_chain() {
  evaluate "$DENSE"
  once "$OUT/int8.pt" fairseq-compress quantize --path "$DENSE" --out "$OUT/int8.pt" --bits 8
  evaluate "$OUT/int8.pt" int8
  once "$OUT/ipq.pt" fairseq-compress ipq --path "$DENSE" --out "$OUT/ipq.pt" --data "$DATA" \
    --config fairseq_compress/config/ipq/transformer.yaml --finetune-updates 20 --n-iter 5
  evaluate "$OUT/ipq.pt"
}
# Half the heads and FFN neurons of every layer removed, fine-tuned at the new shapes; then int8,
# and CTranslate2 int8 of it.
shrunk_chain() {
  once "$OUT/shrunk.pt" fairseq-compress shrink --path "$DENSE" --out "$OUT/shrunk.pt" --heads-keep 0.5 --ffn-keep 0.5
  bash scripts/train_mt.sh "$DATA" "$OUT/shrunk_ft" --arch "$ARCH" --max-update "$FINETUNE_UPDATES" --lr 0.0005 \
    --warmup 1 -- --restore-file "$(realpath "$OUT/shrunk.pt")" --reset-optimizer \
    --reset-dataloader --reset-meters --reset-lr-scheduler
  evaluate "$SHRUNK"
  once "$OUT/shrunk_int8.pt" fairseq-compress quantize --path "$SHRUNK" --out "$OUT/shrunk_int8.pt" --bits 8
  evaluate "$OUT/shrunk_int8.pt" int8
  once "$OUT/shrunk_ct2_int8/model.bin" fairseq-compress export --format ctranslate2 --path "$SHRUNK" \
    --data "$DATA" --out "$OUT/shrunk_ct2_int8" --quantization int8 --force
  evaluate "$OUT/shrunk_ct2_int8"
}
start_job shrunk_chain
start_job dense_chain
finish_jobs

artifacts=("dense fp32|$DENSE"
  "int8 (fairseq-generate)|$OUT/int8.pt"
  "shrunk 50% heads+FFN, fine-tuned|$SHRUNK"
  "shrunk + int8|$OUT/shrunk_int8.pt"
  "iPQ|$OUT/ipq.pt"
  "shrunk, CTranslate2 int8|$OUT/shrunk_ct2_int8")
for artifact in "${artifacts[@]}"; do
  IFS='|' read -r label path <<< "$artifact"
  "$PY" -m fairseq_compress.studies.demo_table add --table "$TABLE" --artifact-name "$label" --artifact "$path" \
    --bleu-json "${path%.pt}.bleu.json"
done

echo
echo "EN->FR, shipped test split: $ARCH trained $MINUTES min on $(nproc) CPU cores, then compressed and deployed:"
"$PY" -m fairseq_compress.studies.demo_table show --table "$TABLE"
mkdir -p docs/results
"$PY" -m fairseq_compress.studies.demo_table csv --table "$TABLE" > docs/results/demo.csv
"$PY" -m fairseq_compress.studies.demo_table plot --table "$TABLE" --png docs/results/demo.png \
  --title "$ARCH, $MINUTES min of training: every artifact of the demo"
echo "(also in docs/results/demo.csv and docs/results/demo.png)"
# A distilled student needs a teacher trained for most of an hour: it does not fit these 15 minutes.
echo "Distillation into fast students (its own ~3 h study): docs/distillation.md"
