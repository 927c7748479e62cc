#!/usr/bin/env bash
# Ticket transfer, 3 seeds each: a global magnitude ticket of the trained source network,
# rewound to init, trained on the target task beside the target's own ticket (native),
# the same mask on a fresh init (reinit) and the mask shuffled within each layer (shuffle).
# Once `jaxticket transfer` is registered, `jaxticket transfer <same flags>` is the same.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-experiments/transfer/runs}
RUN="nice -n 10 python experiments/transfer/run.py --seeds 3 --quiet --out $OUT"

# MNIST-1D (generation seed 42, the published set) -> a re-seeded MNIST-1D (seed 43).
$RUN --dataset mnist1d --model lenet_300_100 --steps 2000 --eval-every 200 \
  --sparsities 0.8,0.9,0.95,0.98

# Digits 0-4 -> digits 5-9 (each relabelled 0..4).
$RUN --dataset digits --model mlp --hidden 64,32 --val-size 100 --steps 1000 --eval-every 100 \
  --source-classes 0,1,2,3,4 --target-classes 5,6,7,8,9 --sparsities 0.8,0.9,0.95,0.98

# (a + b) mod 31 -> (a - b) mod 31: the embedding MLP with the grokking setting (AdamW 1e-3,
# weight decay 1, full batch of the 60 % training pairs minus 50 for validation).
$RUN --dataset modular --model embed_mlp --hidden 64 --p 31 --train-fraction 0.6 \
  --val-size 50 --batch-size 527 --optimizer adamw --learning-rate 1e-3 --weight-decay 1 \
  --steps 5000 --eval-every 250 --sparsities 0.4,0.8
