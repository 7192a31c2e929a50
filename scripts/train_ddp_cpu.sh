#!/usr/bin/env bash
# Data-parallel fairseq-train on this machine's CPUs: NPROC ranks over gloo.
# fairseq's own single-node launcher needs CUDA, so each rank is started here
# with the recipe of ../shared/notes/dependencies.md (--distributed-no-spawn,
# legacy_ddp: the pytorch_ddp backend passes device_ids, which CPU DDP rejects).
#   bash scripts/train_ddp_cpu.sh 2 -- DATA --user-dir fairseq_compress --arch ... [fairseq-train args]
# Each rank gets nproc/NPROC threads (OMP_NUM_THREADS overrides). Rank 0 logs
# to this terminal, the others to temporary files whose tails are shown when a
# rank fails; then the other ranks are stopped and the first failure's status
# is returned. FAIRSEQ_TRAIN (default fairseq-train) is the command each rank runs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage="usage: $0 NPROC [--port PORT] -- DATA [fairseq-train args]"
PORT=""
parse_args "$usage" "--port=PORT --" "$@"
((${#POSITIONAL[@]} == 1)) || die "$usage"
NPROC=${POSITIONAL[0]}
[[ $NPROC =~ ^[1-9][0-9]*$ ]] || die "NPROC must be a positive integer, got '$NPROC'"
((${#EXTRA[@]})) || die "give the fairseq-train arguments after --; $usage"
for arg in "${EXTRA[@]}"; do
  case $arg in
    --distributed-world-size|--distributed-rank|--distributed-init-method|--distributed-backend|--distributed-no-spawn|--distributed-port|--nprocs-per-node)
      die "$arg is set by train_ddp_cpu.sh itself; drop it from the fairseq-train arguments" ;;
    pytorch_ddp|c10d|fully_sharded)
      die "--ddp-backend $arg needs CUDA; on CPU use legacy_ddp (the default here) or no_c10d" ;;
  esac
done
[[ " ${EXTRA[*]} " == *" --ddp-backend "* ]] || EXTRA+=(--ddp-backend legacy_ddp)
[[ -n $PORT ]] || PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
[[ $PORT =~ ^[0-9]+$ ]] || die "--port must be a port number, got '$PORT'"
threads=${OMP_NUM_THREADS:-$(( $(nproc) / NPROC ))}
((threads >= 1)) || threads=1

logs=$(mktemp -d)
pids=()
stop_ranks() { kill "${pids[@]}" 2> /dev/null || true; }
trap 'stop_ranks; rm -rf "$logs"' EXIT
trap 'exit 130' INT TERM
for ((rank = 0; rank < NPROC; rank++)); do
  flags=(--cpu --distributed-backend gloo --distributed-world-size "$NPROC" --distributed-rank "$rank"
         --distributed-init-method "tcp://127.0.0.1:$PORT" --distributed-no-spawn)
  if ((rank == 0)); then
    OMP_NUM_THREADS=$threads ${FAIRSEQ_TRAIN:-fairseq-train} "${EXTRA[@]}" "${flags[@]}" &
  else
    OMP_NUM_THREADS=$threads ${FAIRSEQ_TRAIN:-fairseq-train} "${EXTRA[@]}" "${flags[@]}" > "$logs/rank$rank.log" 2>&1 &
  fi
  pids+=($!)
done
log "$NPROC ranks ($threads threads each) on tcp://127.0.0.1:$PORT"
running=("${pids[@]}")
while ((${#running[@]})); do
  status=0
  wait -n -p finished "${running[@]}" || status=$?
  if ((status != 0)); then
    for file in "$logs"/rank*.log; do
      [[ -f $file ]] && { echo "--- $(basename "$file" .log) (last lines)" >&2; tail -n 20 "$file" >&2; }
    done
    die "a rank exited with status $status; the other ranks were stopped"
  fi
  left=()
  for pid in "${running[@]}"; do ((pid == finished)) || left+=("$pid"); done
  running=("${left[@]}")
done
