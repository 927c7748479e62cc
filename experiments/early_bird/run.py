"""Early-bird tickets on MNIST-1D LeNet-300-100: detection epoch, retrained accuracy of the
early-bird ticket against the full-training one-shot ticket, and dense steps saved.

    python experiments/early_bird/run.py            # 3 seeds, sparsity 0.8 and 0.9

Settings follow the lottery run of the compare study (Adam 1.2e-3, batch 60, 3000 steps);
masks by global magnitude pruning at every epoch end (n_train // 60 = 66 steps), window 5;
thresholds 0.1 (the paper's), 0.02 and 0.01 on the same masks (``redetect``).
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
import optax

import jaxticket
from jaxticket.stability.early_bird import early_bird, redetect, retrain_tickets


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--sparsity", type=float, nargs="+", default=[0.8, 0.9])
    ap.add_argument("--pruning", default="global")
    ap.add_argument("--threshold", type=float, nargs="+", default=[0.1, 0.02, 0.01])
    args = ap.parse_args()
    data = jaxticket.data.load("mnist1d")
    model = jaxticket.models.get("lenet_300_100", input_shape=data.input_shape, num_classes=10)
    opt = optax.adam(1.2e-3)
    init_keys = jax.random.split(jax.random.key(0), args.seeds)
    data_keys = jax.random.split(jax.random.key(1), args.seeds)
    batch = 60
    every = data.x_train.shape[0] // batch
    print(f"epoch = {every} steps, {args.steps // every} epochs, seeds {args.seeds}")
    for s in args.sparsity:
        for thr in args.threshold:
            t = time.time()
            if thr == args.threshold[0]:
                eb = early_bird(
                    model,
                    data,
                    opt,
                    init_keys=init_keys,
                    data_keys=data_keys,
                    sparsity=s,
                    steps=args.steps,
                    batch_size=batch,
                    every=every,
                    pruning=args.pruning,
                    threshold=thr,
                )
            else:  # the same masks, detection redone
                eb = redetect(eb, window=5, threshold=thr)
            r = retrain_tickets(
                model, data, opt, eb, data_keys=data_keys, steps=args.steps, batch_size=batch
            )
            dense = np.asarray(eb.history["test_accuracy"])[:, -1]
            print(f"\n## sparsity {s}, threshold {thr} ({time.time() - t:.0f} s)")
            print(
                "| seed | detection epoch | step | dense acc | early-bird acc | full one-shot acc "
                "| dense steps saved |"
            )
            print("|---|---|---|---|---|---|---|")
            for i in range(args.seeds):
                print(
                    f"| {i} | {eb.detected_epoch[i]} | {eb.detected_step[i]} | {dense[i]:.4f} | "
                    f"{r['early_bird_accuracy'][i]:.4f} | {r['full_accuracy'][i]:.4f} | "
                    f"{r['steps_saved'][i]} / {r['full_steps'][i]} |"
                )
            for name in ("early_bird_accuracy", "full_accuracy", "steps_saved"):
                v = np.asarray(r[name], float)
                print(
                    f"{name}: mean {v.mean():.4f} std {v.std():.4f} min {v.min():.4f} "
                    f"max {v.max():.4f}"
                )
            print("distance trace (seed 0):", np.round(eb.distances[0], 3).tolist())


if __name__ == "__main__":
    main()
