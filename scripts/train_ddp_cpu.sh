#!/usr/bin/env bash
# Data-parallel fairseq-train on this machine's CPUs: torchrun starts NPROC ranks over gloo.
#   bash scripts/train_ddp_cpu.sh 2 -- DATA --user-dir fairseq_compress --arch ... [fairseq-train args]
# is
#   torchrun --standalone --nproc-per-node 2 $(command -v fairseq-train) DATA ... \
#     --cpu --distributed-backend gloo --ddp-backend legacy_ddp
# (the plugin reads torchrun's world on CPU: fairseq_compress/fairseq_hooks.py). Each rank gets
# nproc/NPROC threads (OMP_NUM_THREADS overrides); torchrun stops every rank when one fails.
# FAIRSEQ_TRAIN (default: fairseq-train on PATH) is the Python script each rank runs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage="usage: $0 NPROC -- DATA [fairseq-train args]"
parse_args "$usage" "--" "$@"
((${#POSITIONAL[@]} == 1)) || die "$usage"
NPROC=${POSITIONAL[0]}
[[ $NPROC =~ ^[1-9][0-9]*$ ]] || die "NPROC must be a positive integer, got '$NPROC'"
((${#EXTRA[@]})) || die "give the fairseq-train arguments after --; $usage"
[[ " ${EXTRA[*]} " == *" --distributed-backend "* ]] || EXTRA+=(--distributed-backend gloo)
[[ " ${EXTRA[*]} " == *" --ddp-backend "* ]] || EXTRA+=(--ddp-backend legacy_ddp)
threads=$(( $(nproc) / NPROC ))
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( threads > 1 ? threads : 1 ))}
trainer=${FAIRSEQ_TRAIN:-$(command -v fairseq-train)} || die "fairseq-train is not on PATH; run scripts/setup.sh"
[[ -f $trainer ]] || die "FAIRSEQ_TRAIN must be a Python script, got '$trainer'"
exec torchrun --standalone --nproc-per-node "$NPROC" "$trainer" "${EXTRA[@]}" --cpu
