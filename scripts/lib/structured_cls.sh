# The classification half of scripts/structured_study.sh (--task cls): its defaults and steps.
# RAW is the shipped corpus (data-bin/raw): its English text pretrains ARCH and --small-arch as
# masked LMs for --pretrain-minutes each, at once (one per core, so the same training time;
# or --pretrained / --small-pretrained), and its cls task fine-tunes them with the RoBERTa GLUE
# recipe (scripts/finetune_cls.sh). The metric is test accuracy (eval_cls.sh: the stock
# fairseq-validate), the speed the classifier's sentences/s over a random sample of
# --speed-sentences of the dev and of the test split (eval_cls.sh --speed-sentences: the whole
# splits, 11k sentences each, took the race of 28 contenders two hours). Source it from
# structured_study.sh.
# shellcheck shell=bash

declare OUT BASE  # structured_study.sh's, read by the steps below
# shellcheck disable=SC2034  # read by structured_study.sh
METRIC=accuracy STUDY=structured_study_cls IPQ_CONFIG=roberta
: "${ARCH:=roberta_l3_h256}" "${SMALL_ARCH:=roberta_l2_h128}" "${MAX_UPDATE:=400}" "${FINETUNE:=150}"
: "${PRETRAIN_MINUTES:=15}" "${SPEED_SENTENCES:=1024}"
[[ -z $BLEU_SENTENCES ]] || die "--bleu-sentences is for --task mt (cls scores its whole dev and test splits)"
# shellcheck disable=SC2034  # read by structured_study.sh
RACE_ARGS=(--speed-sentences "$SPEED_SENTENCES")
[[ $PRETRAIN_MINUTES =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--pretrain-minutes must be a positive number, got '$PRETRAIN_MINUTES'"
[[ -z $PRETRAINED || -f $PRETRAINED ]] || die "--pretrained: no such checkpoint: $PRETRAINED"
[[ -z $SMALL_PRETRAINED || -f $SMALL_PRETRAINED ]] || die "--small-pretrained: no such checkpoint: $SMALL_PRETRAINED"

setup_task() {  # the shipped English text and cls task prepared (idempotent); SCORE_DATA = SPEED_DATA = the task
  local raw=${POSITIONAL[0]:-$ROOT/data-bin/raw}
  require_dir "$raw/cls" "RAW/cls (the shipped corpus is data-bin/raw)"
  bash "$ROOT/scripts/prepare_mlm.sh" "$raw/en" "$ROOT/data-bin/en"
  bash "$ROOT/scripts/prepare_glue.sh" "$raw/cls" "$ROOT/data-bin/cls" "$ROOT/data-bin/en"
  # shellcheck disable=SC2034  # SPEED_DATA: read by structured_study.sh
  DATA=$ROOT/data-bin/cls SCORE_DATA=$ROOT/data-bin/cls SPEED_DATA=$ROOT/data-bin/cls
}

pretrain() {  # ARCH SAVE_DIR: the masked LM, as drophead_cls.sh pretrains it
  bash "$ROOT/scripts/pretrain_mlm.sh" "$ROOT/data-bin/en" "$2" --arch "$1" --minutes "$PRETRAIN_MINUTES" \
    --max-tokens 2048 --warmup 200
}
prepare_models() {  # PRETRAINED and SMALL_PRETRAINED, trained at once when not given
  [[ -n $PRETRAINED ]] || start_job pretrain "$ARCH" "$OUT/pretrain/large"
  [[ -n $SMALL_PRETRAINED ]] || start_job pretrain "$SMALL_ARCH" "$OUT/pretrain/small"
  finish_jobs
  PRETRAINED=${PRETRAINED:-$OUT/pretrain/large/checkpoint_last.pt}
  SMALL_PRETRAINED=${SMALL_PRETRAINED:-$OUT/pretrain/small/checkpoint_last.pt}
}

finetune() {  # ARCH FROM SAVE_DIR UPDATES SEED [fairseq-train args]: finetune_cls.sh, its dev/test JSON to the log
  local arch=$1 from=$2 dir=$3 updates=$4 seed=$5
  shift 5
  log "$dir: $(bash "$ROOT/scripts/finetune_cls.sh" "$DATA" "$dir" --arch "$arch" --pretrained "$from" \
    --max-update "$updates" --seed "$seed" -- "$@")"
}

train_model() {  # CONFIG SEED: PRETRAINED fine-tuned with CONFIG's DropHead flags
  local flags=${DROPHEAD_FLAGS[$1]:-}
  # shellcheck disable=SC2086  # the flags are words
  finetune "$ARCH" "$PRETRAINED" "$OUT/models/$1/seed$2" "$MAX_UPDATE" "$2" $flags
}

train_small() {  # SMALL_PRETRAINED (pretrained as long as ARCH) fine-tuned for as many updates
  finetune "$SMALL_ARCH" "$SMALL_PRETRAINED" "$OUT/small" "$MAX_UPDATE" 1
}

finetune_with_mask() {  # DIR PRUNING_FLAGS...: BASE fine-tuned for FINETUNE updates with the pruning task
  finetune_from "$BASE" "$1" "$FINETUNE" --task sentence_prediction_pruning "${@:2}"
}

# The short fine-tunes of stages 2 and 3 validate and save at their end only: the study scores
# their last checkpoint (or its shrunk copy), so finetune_cls.sh's quarterly dev passes
# (11k sentences each) would only cost time.
finetune_from() {  # CKPT DIR UPDATES [fairseq-train args]: CKPT fine-tuned for UPDATES updates, no mask unless the args add one
  finetune "$ARCH" "$1" "$2" "$3" 1 --validate-interval-updates "$3" --save-interval-updates "$3" "${@:4}"
}

score() {  # CKPT [fairseq-validate args]: {"accuracy": test, "dev_accuracy": dev}
  local ckpt=$1
  shift
  bash "$ROOT/scripts/eval_cls.sh" "$ckpt" "$SCORE_DATA" -- "$@"
}
