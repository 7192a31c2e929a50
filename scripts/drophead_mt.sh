#!/usr/bin/env bash
# Scheduled DropHead on translation: the baseline vs DropHead p = 0.1 and 0.2
# (V schedule) and constant p = 0.1, the same number of updates and the demo's
# recipe, several seeds each; test BLEU (detokenized sacreBLEU) mean +- std.
# Writes OUT/<config>/seed<N>/ (checkpoints, bleu.json) and docs/results/drophead_mt.csv.
# Finished runs are reused, so an interrupted study resumes where it stopped.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$ROOT/scripts/lib/drophead.sh"

usage="usage: $0 [DATA] [OUT] [--arch transformer_l3_h256] [--max-update 1500] [--seeds '1 2 3'] [--configs 'baseline v_p0.1 v_p0.2 constant_p0.1']"
ARCH=transformer_l3_h256 MAX_UPDATE=1500 SEEDS="1 2 3" CONFIGS=$DROPHEAD_CONFIGS
parse_args "$usage" "--arch=ARCH --max-update=MAX_UPDATE --seeds=SEEDS --configs=CONFIGS" "$@"
DATA=${POSITIONAL[0]:-$ROOT/data-bin/en_fr} OUT=${POSITIONAL[1]:-$ROOT/checkpoints/drophead_mt}
require_dir "$DATA" "DATA (prepare it with scripts/prepare_mt.sh)"

read -r -a configs <<< "$CONFIGS"
require_drophead_configs "${configs[@]}"
for config in "${configs[@]}"; do
  for seed in $SEEDS; do
    run=$OUT/$config/seed$seed
    # shellcheck disable=SC2086  # the flags are words
    bash "$ROOT/scripts/train_mt.sh" "$DATA" "$run" --arch "$ARCH" --max-update "$MAX_UPDATE" \
      --seed "$seed" --max-tokens 1024 --warmup 100 -- ${DROPHEAD_FLAGS[$config]}
    run_once "$run/bleu.json" bash "$ROOT/scripts/eval_bleu.sh" "$run/checkpoint_last.pt" "$DATA" --json
    log "$config seed $seed: $(cat "$run/bleu.json")"
  done
done
echo "Scheduled DropHead, $ARCH, $MAX_UPDATE updates, EN->FR test BLEU:"
groups=()
for config in "${configs[@]}"; do groups+=("$config=$OUT/$config"); done
"$PY" "$ROOT/scripts/lib/summarize_runs.py" "${groups[@]}" --metric bleu --csv "$ROOT/docs/results/drophead_mt.csv"
