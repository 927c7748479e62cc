#!/usr/bin/env bash
# Every method of jaxticket on equal terms (issue 11): same inits, data order, steps, seeds
# and target sparsities; the default methods (imp, snip, grasp, synflow, random_erk,
# magnitude_init, gmp, set, rigl, granet, finetune) with their controls.
# Each comparison is resumable: rerun the same line and only what is unfinished trains.
# Copies the tables and plots of each comparison into this folder.
set -euo pipefail
cd "$(dirname "$0")"
OUT=${OUT:-runs}
compare() {  # name, then the flags
  name=$1; shift
  jaxticket compare "$@" --seeds 3 --out "$OUT" --quiet > "$name.txt"
  dir=$(sed -n 's/^comparison directory: //p' "$name.txt")
  mkdir -p "$name"
  cp "$dir"/table.md "$dir"/results.csv "$dir"/accuracy_vs_sparsity.png "$dir"/layer_density.png "$name"/
  rm "$name.txt"
}
compare lenet_mnist1d --model lenet_300_100 --dataset mnist1d
compare lenet_digits --model lenet_300_100 --dataset digits --val-size 200
compare cnn1d_mnist1d --model cnn1d --dataset mnist1d --steps 500 --eval-every 50 --imp-fraction 0.5
