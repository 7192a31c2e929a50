# The DropHead studies' settings and design (drophead_mt.sh, drophead_cls.sh): DropHead on top of the
# tuned dropout; source it after common.sh.
# shellcheck shell=bash

declare PY DROPOUTS SEEDS  # the sourcing script's
declare -A DROPHEAD_FLAGS=(
  [v_p0.1]="--drophead-p 0.1 --drophead-schedule v"
  [v_p0.2]="--drophead-p 0.2 --drophead-schedule v"
)

# require_dropouts: each of DROPOUTS is in [0, 1).
require_dropouts() {
  local dropout
  for dropout in $DROPOUTS; do
    [[ $dropout =~ ^0(\.[0-9]+)?$ ]] || die "--dropouts: each must be in [0, 1), got '$dropout'"
  done
}

# drophead_study RUN METRIC METRIC_FILE min|max: `RUN CONFIG SEED [fairseq-train args]` for every
# dropout of DROPOUTS and seed of SEEDS (start_job: two at a time), then, on top of the dropout
# whose mean METRIC (each run's METRIC_FILE, under WORK/CONFIG/seedSEED) is the min / max,
# DropHead p = 0.1 and 0.2 (V schedule). STUDY_GROUPS: the NAME=DIR of every config, for
# fairseq_compress.studies.summarize_runs.
drophead_study() {
  local run=$1 metric=$2 metric_file=$3 best_of=$4 dropout seed config best
  STUDY_GROUPS=()
  for dropout in $DROPOUTS; do
    for seed in $SEEDS; do start_job "$run" "dropout$dropout" "$seed" --dropout "$dropout"; done
    STUDY_GROUPS+=("dropout $dropout=$WORK/dropout$dropout")
  done
  finish_jobs
  best=$("$PY" -m fairseq_compress.studies.summarize_runs "${STUDY_GROUPS[@]}" --metric "$metric" \
    --metric-file "$metric_file" --best "$best_of")
  log "tuned baseline ($best_of mean $metric): $best"
  for config in v_p0.1 v_p0.2; do
    # shellcheck disable=SC2086  # the flags are words
    for seed in $SEEDS; do start_job "$run" "${best// /}_$config" "$seed" --dropout "${best#dropout }" ${DROPHEAD_FLAGS[$config]}; done
    STUDY_GROUPS+=("$best + DropHead ${config//_/ }=$WORK/${best// /}_$config")
  done
  finish_jobs
}
