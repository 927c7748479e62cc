#!/usr/bin/env bash
# Supermasks (issue 14): edge-popup over random weights, the Lottery Jackpots search over a
# trained network, and HideNseek's sign supermask over a SynFlow mask. 3 seeds each, CPU.
# Every command is resumable (rerunning it loads the finished phases); tables and plots land
# in experiments/supermasks/runs/<run directory>/.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=experiments/supermasks/runs
# `python -m jaxticket.supermask.command` is `jaxticket supermask` (same flags).
run() { nice -n 10 python -m jaxticket.supermask.command --out "$OUT" --quiet "$@"; }

# 1. Edge-popup on a random LeNet-300-100 (signed Kaiming constant) on MNIST-1D.
run --variant edge_popup --model lenet_300_100 --dataset mnist1d --ks 0.1,0.3,0.5,0.7 \
  --steps 1500 --eval-every 100 --score-learning-rate 0.01

# 2. Edge-popup on a random MLP (default widths) on digits.
run --variant edge_popup --model mlp --dataset digits --ks 0.1,0.3,0.5,0.7 \
  --steps 1000 --eval-every 100 --val-size 200 --score-learning-rate 0.01

# 3. The jackpot search on the trained LeNet-300-100 (MNIST-1D): from the magnitude mask
#    (jackpot) against from random scores (scratch) over the same trained weights.
run --variant jackpot --model lenet_300_100 --dataset mnist1d --ks 0.1,0.3,0.5 \
  --steps 1500 --eval-every 100 --score-learning-rate 0.001

# 4. HideNseek: SynFlow at init keeps k of the weights, then a sign supermask over them.
run --variant hidenseek --model lenet_300_100 --dataset mnist1d --ks 0.1,0.3,0.5 \
  --steps 1500 --eval-every 100 --score-learning-rate 0.01

# 5. Control for 2: the same search over the model's own init (not the signed constant).
run --variant edge_popup --model mlp --dataset digits --ks 0.5 --weight-init init \
  --steps 1000 --eval-every 100 --val-size 200 --score-learning-rate 0.01
