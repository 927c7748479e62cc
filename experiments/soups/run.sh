#!/usr/bin/env bash
# Sparse model soups vs their members vs plain IMP, per level (issue 14).
# Equivalent to `jaxticket soups ...` once the command is registered; this driver calls
# the command module directly so it runs either way.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/experiments/soups}
soups() {
  nice -n 10 python -c 'import argparse, sys
from jaxticket.soups import command
p = argparse.ArgumentParser(); command.add_arguments(p)
sys.exit(command.run_command(p.parse_args(sys.argv[1:])))' "$@"
}
COMMON=(--model lenet_300_100 --dataset mnist1d --seeds 3 --steps 1000 --eval-every 250
        --levels 4 --members 3 --prune-fraction 0.5 --out "$OUT" --quiet)
# 1. SMS as in the paper: each level retrains from the previous soup's pruned weights.
soups "${COMMON[@]}" --retrain soup
# 2. Rewinding to initialization (the lottery workflow's retraining): members from θ_0
#    that differ in data order are not linearly connected, so their average should fail.
soups "${COMMON[@]}" --retrain rewind
# 3. Members that differ in weight decay (AdamW) instead of data order.
soups --model lenet_300_100 --dataset mnist1d --seeds 3 --steps 1000 --eval-every 250 \
  --levels 4 --members 3 --prune-fraction 0.5 --out "$OUT" --quiet --optimizer adamw \
  --vary weight_decay --member-weight-decays 0,1e-4,1e-3 --retrain soup
