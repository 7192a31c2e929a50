#!/usr/bin/env bash
# Translate a split with fairseq-generate, decode sentencepiece, and score with
# detokenized, case-sensitive sacreBLEU against the raw references that
# prepare_mt.sh kept in DATA/raw/. Writes CKPT_DIR/<ckpt>.<split>.hyp.
# Hypotheses are capped at 1.5 x source length + 10 tokens (fairseq's default
# cap is 200 tokens), so an under-trained model that repeats itself cannot make
# generation crawl. Extra arguments after -- go to fairseq-generate and win.
# CKPT may also be a CTranslate2 model directory (fairseq-compress export --format
# ctranslate2): it translates DATA/raw/SPLIT.SRC with the same beam, batches and
# caps (fairseq_compress/pipelines/ct2_translate.py), and is scored the same way. --json also reports the
# runtime's own speed (sentences_per_s, model loading excluded). --vmap restricts a CTranslate2
# model's output vocabulary with the vocabulary map it was exported with (export --vmap).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage="usage: $0 CKPT DATA [--split test] [--beam 5] [--batch-size 64] [--json] [--vmap] [-- fairseq-generate args]"
SPLIT=test BEAM=5 BATCH=64 JSON=0 VMAP=0
parse_args "$usage" "--split=SPLIT --beam=BEAM --batch-size=BATCH --json=JSON? --vmap=VMAP? --" "$@"
((${#POSITIONAL[@]} == 2)) || die "$usage"
CKPT=${POSITIONAL[0]} DATA=${POSITIONAL[1]}
CKPT=${CKPT%/}
[[ -f $CKPT || -f $CKPT/model.bin ]] || die "checkpoint '$CKPT' does not exist (a .pt file or a CTranslate2 directory)"
((${#EXTRA[@]} == 0)) || [[ -f $CKPT ]] || die "fairseq-generate arguments after -- do not apply to a CTranslate2 directory"
[[ $VMAP == 0 || -f $CKPT/vmap.txt ]] || die "--vmap needs a CTranslate2 directory exported with a vocabulary map (fairseq-compress export --vmap); $CKPT has none"
require_dir "$DATA" "DATA"
[[ -f $DATA/spm.model ]] || die "$DATA/spm.model is missing: prepare DATA with scripts/prepare_mt.sh"
shopt -s nullglob
dicts=("$DATA"/dict.*.txt)
bins=("$DATA/$SPLIT".*-*.*.bin)
shopt -u nullglob
((${#dicts[@]} == 2)) || die "$DATA must hold exactly two dict.LANG.txt files (found ${#dicts[@]})"
"$PY" "$USER_DIR/pipelines/spm.py" check-dict --model "$DATA/spm.model" --dict "${dicts[@]}" || exit 2
# The target language is the one whose binarized split ends in .TGT.bin after SRC-TGT.
((${#bins[@]})) || die "no binarized '$SPLIT' split in $DATA (--split must be valid or test)"
pair=$(basename "${bins[0]}" | cut -d. -f2)
SRC_LANG=${pair%-*} TGT_LANG=${pair#*-}
REF=$DATA/raw/$SPLIT.$TGT_LANG
[[ -f $REF ]] || die "missing reference $REF"

HYP=${CKPT%.pt}.$SPLIT.hyp
[[ $VMAP == 0 ]] || HYP=${CKPT}.$SPLIT.vmap.hyp
log "translating $DATA ($SPLIT, $SRC_LANG->$TGT_LANG) with $CKPT, beam $BEAM"
if [[ -d $CKPT ]]; then
  [[ -f $DATA/raw/$SPLIT.$SRC_LANG ]] || die "missing source $DATA/raw/$SPLIT.$SRC_LANG"
  vmap=()
  [[ $VMAP == 1 ]] && vmap=(--use-vmap)
  "$PY" "$USER_DIR/pipelines/ct2_translate.py" --model "$CKPT" --src "$DATA/raw/$SPLIT.$SRC_LANG" --out "$HYP" \
    --beam "$BEAM" --batch-size "$BATCH" --max-len-a 1.5 --max-len-b 10 "${vmap[@]}" 2> "$HYP.log" \
    || { tail -n 3 "$HYP.log" >&2; die "CTranslate2 translation failed (log: $HYP.log)"; }
else
  fairseq-generate "$DATA" --user-dir "$USER_DIR" --path "$CKPT" --source-lang "$SRC_LANG" \
    --target-lang "$TGT_LANG" --gen-subset "$SPLIT" --beam "$BEAM" --batch-size "$BATCH" \
    --required-batch-size-multiple 1 --max-len-a 1.5 --max-len-b 10 "${EXTRA[@]}" > "$HYP.generate" 2> "$HYP.log" \
    || { tail -n 3 "$HYP.log" >&2; die "fairseq-generate failed (log: $HYP.log)"; }
  # fairseq-generate prints hypotheses as H-<id>\t<score>\t<pieces>, out of order.
  grep -P '^H-\d+\t' "$HYP.generate" | sed 's/^H-//' | sort -n -k1,1 | cut -f3 \
    | "$PY" "$USER_DIR/pipelines/spm.py" decode --model "$DATA/spm.model" > "$HYP"
fi
json=()
[[ $JSON == 1 ]] && json=(--json)
"$PY" "$USER_DIR/pipelines/score_bleu.py" --ref "$REF" --hyp "$HYP" --speed-log "$HYP.log" "${json[@]}"
