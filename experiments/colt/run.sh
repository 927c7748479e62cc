#!/usr/bin/env bash
# COLT vs IMP at equal sparsity: accuracy and iterations to find the mask (issue 14).
# Equivalent to `jaxticket colt ...` once the command is registered; this driver calls
# the command module directly so it runs either way.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/experiments/colt}
colt() {
  nice -n 10 python -c 'import argparse, sys
import jaxticket.colt.command as command
p = argparse.ArgumentParser(); command.add_arguments(p)
sys.exit(command.run_command(p.parse_args(sys.argv[1:])))' "$@"
}
COMMON=(--model lenet_300_100 --dataset mnist1d --seeds 3 --steps 1000 --eval-every 250
        --cycles 4 --prune-fraction 0.5 --out "$OUT" --quiet)
# Two halves, each copy trained for the same epochs over its half (500 iterations).
colt "${COMMON[@]}" --segments 2
# Four quarters (250 iterations per copy).
colt "${COMMON[@]}" --segments 4
# Reference: standard IMP with the same training (50 % of the survivors per level, the
# output layer at half rate), for iterations-to-sparsity at IMP's own schedule.
nice -n 10 python -c 'import sys; from jaxticket.cli import main; sys.exit(main(sys.argv[1:]))' \
  lottery --model lenet_300_100 --dataset mnist1d --seeds 3 --steps 1000 --eval-every 250 \
  --levels 5 --prune-fraction 0.5 --controls '' --out "$OUT" --quiet
