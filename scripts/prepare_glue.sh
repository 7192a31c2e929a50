#!/usr/bin/env bash
# Prepare a GLUE-style classification task for fairseq's sentence_prediction:
#   TSV -> input0/ [input1/] label/ binarized dirs, as fairseq's RoBERTa GLUE
#   recipe lays them out, encoded with the sentencepiece model and dictionary
#   that prepare_mlm.sh stored in PRETRAIN_DATA (default data-bin/en).
# TASK_DIR holds train.tsv and dev.tsv (MNLI: dev_matched.tsv), optionally
# test.tsv (MNLI: test_matched.tsv), plain or .gz, each with a header line.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage="usage: $0 TASK_DIR OUT [PRETRAIN_DATA] [--workers 2] [--force]"
WORKERS=2
parse_args "$usage" "--workers=WORKERS" "$@"
((${#POSITIONAL[@]} == 2 || ${#POSITIONAL[@]} == 3)) || die "$usage"
TASK_DIR=${POSITIONAL[0]} OUT=${POSITIONAL[1]} PRETRAIN=${POSITIONAL[2]:-$ROOT/data-bin/en}
require_dir "$TASK_DIR" "TASK_DIR"
require_dir "$PRETRAIN" "PRETRAIN_DATA"
for f in spm.model dict.txt; do
  [[ -f $PRETRAIN/$f ]] || die "$PRETRAIN/$f is missing: PRETRAIN_DATA must be an output of scripts/prepare_mlm.sh"
done
"$PY" "$USER_DIR/pipelines/spm.py" check-dict --model "$PRETRAIN/spm.model" --dict "$PRETRAIN/dict.txt" || exit 2

# fairseq split name -> the TSV it comes from (first existing name wins).
declare -A tsv=()
tsv[train]=$(require_input "$TASK_DIR" train.tsv)
tsv[valid]=$(input_file "$TASK_DIR" dev.tsv || input_file "$TASK_DIR" dev_matched.tsv) \
  || die "missing $TASK_DIR/dev.tsv (or dev_matched.tsv, .gz)"
splits=(train valid)
if test_tsv=$(input_file "$TASK_DIR" test.tsv || input_file "$TASK_DIR" test_matched.tsv); then
  tsv[test]=$test_tsv
  splits+=(test)
fi

stamp=$(printf 'prepare_glue pretrain=%s\n' "$(realpath "$PRETRAIN")"; describe_inputs "${tsv[@]}" "$PRETRAIN/spm.model" "$PRETRAIN/dict.txt")
begin_output "$OUT" "$stamp" || exit 0

mkdir -p "$STAGING/raw" "$STAGING/text"
declare -A inputs_of=() labelled=()
for split in "${splits[@]}"; do
  read -r n_inputs has_label rows < <("$PY" "$USER_DIR/pipelines/glue_tsv.py" \
    --input "${tsv[$split]}" --out-prefix "$STAGING/raw/$split") || exit 2
  inputs_of[$split]=$n_inputs
  [[ $has_label == label ]] && labelled[$split]=1
  log "${tsv[$split]}: $rows examples, $n_inputs input column(s), ${has_label/nolabel/no labels}"
done
[[ ${labelled[train]:-} && ${labelled[valid]:-} ]] || die "train and dev TSVs need a label column (label or gold_label)"
for split in "${splits[@]}"; do
  [[ ${inputs_of[$split]} == "${inputs_of[train]}" ]] \
    || die "${tsv[$split]} has ${inputs_of[$split]} input column(s) but ${tsv[train]} has ${inputs_of[train]}"
done

# binarize NAME [fairseq-preprocess args...]: every split that has STAGING/text/SPLIT.NAME
binarize() {
  local name=$1; shift
  local prefixes=()
  for split in "${splits[@]}"; do
    [[ -f $STAGING/text/$split.$name ]] && prefixes+=("--${split}pref" "$STAGING/text/$split.$name")
  done
  fairseq-preprocess --user-dir "$USER_DIR" --only-source "${prefixes[@]}" --destdir "$STAGING/$name" --workers "$WORKERS" "$@" \
    > "$STAGING/$name.log" 2>&1 || { tail -n 5 "$STAGING/$name.log" >&2; die "fairseq-preprocess failed for $name"; }
  mv "$STAGING/$name.log" "$STAGING/$name/preprocess.log"
}

for ((i = 0; i < inputs_of[train]; i++)); do
  for split in "${splits[@]}"; do
    "$PY" "$USER_DIR/pipelines/spm.py" encode --model "$PRETRAIN/spm.model" \
      < "$STAGING/raw/$split.input$i" > "$STAGING/text/$split.input$i"
  done
  binarize "input$i" --srcdict "$PRETRAIN/dict.txt"
done
for split in "${!labelled[@]}"; do cp "$STAGING/raw/$split.label" "$STAGING/text/$split.label"; done
binarize label --padding-factor 1  # dict.txt then lists exactly the classes
cp "$PRETRAIN/spm.model" "$STAGING/spm.model"
rm -r "$STAGING/raw" "$STAGING/text"

finish_output "$OUT" "$stamp"
log "wrote $OUT: ${inputs_of[train]} input(s), $(wc -l < "$OUT/label/dict.txt") classes (use --num-classes $(wc -l < "$OUT/label/dict.txt")); splits: ${splits[*]}"
