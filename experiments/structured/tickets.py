"""Structured tickets against unstructured ones at equal kernel counts, PreCropping, and the
*Rethinking* comparison, on one model and data set, 3 seeds (vmapped).

    python experiments/structured/tickets.py --model cnn1d --dataset mnist1d
    python experiments/structured/tickets.py --model conv2 --dataset digits --steps 800 --batch 64

Every network trains ``--steps`` steps of Adam (``--lr``; fine-tuning at ``--lr / 10``) with
the same data order per seed; the number reported is the final test accuracy.

* **dense**: the full network.
* **PreCropping** at each ``--precrop`` sparsity: SynFlow (100 rounds, global) masks at that
  sparsity; their per-layer densities (mean over seeds, so every seed has one architecture)
  become channel counts (``jaxticket.structured.precrop``); the compact dense network is
  cut from each seed's initialization, rescaled to its own fan-in (``rescale="fan_in"``)
  or not (``None``), and trained. Against: the SynFlow mask at that sparsity, and a SynFlow
  mask at the PreCropped network's kernel count (same number of weights).
* **structured ticket** at each ``--units`` fraction: one round of IMP over channels — the
  trained dense network's units ranked by the L1 norm of their slices, that fraction removed
  in every layer (layerwise, so all seeds share one architecture; the logits are never
  pruned), the survivors rewound to their initial values, trained (as a masked network; the
  compacted one computes the same function, checked). Against: one round of unstructured
  global magnitude IMP at the same kernel count.
* **Rethinking** on the same architecture: the pruned trained weights compacted and
  fine-tuned, and the architecture freshly initialized (own fan-in) and trained from scratch
  (Scratch-E: as many steps as the dense network).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

import jaxticket
from jaxticket.at_init import SynFlow
from jaxticket.masks import apply_mask
from jaxticket.structured import dependency_groups
from jaxticket.structured.compact import compact
from jaxticket.structured.precrop import channel_counts, densities_of, precrop, rescaled
from jaxticket.structured.pruner import structured_dense_mask, structured_pruner

sys.path.insert(0, os.path.dirname(__file__))
from common import Trainer, kernel_count, stack, summary, unstack, write_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="cnn1d")
    ap.add_argument("--dataset", default="mnist1d")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--precrop", type=float, nargs="*", default=[0.75, 0.9])
    ap.add_argument("--units", type=float, nargs="*", default=[0.5, 0.7])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    t0 = time.time()
    data = jaxticket.data.load(args.dataset)
    model = jaxticket.models.get(
        args.model, input_shape=data.input_shape, num_classes=data.num_classes
    )
    tr = Trainer(data, steps=args.steps, batch_size=args.batch, lr=args.lr, seeds=args.seeds)
    inits = [model.init(k) for k in tr.init_keys]
    P0, S0 = stack([p for p, _ in inits]), stack([s for _, s in inits])
    groups = dependency_groups(model, *inits[0])
    full = kernel_count(inits[0][0])
    rows = []

    def record(method, level, kernels, acc, **extra):
        rows.append(dict(method=method, level=level, kernels=kernels, acc=acc.tolist(), **extra))

    print(f"{args.model} on {args.dataset}: {full} kernel weights, {args.seeds} seeds")
    dense, acc = tr.run(model, P0, S0, label="dense")
    record("dense", None, full, acc)

    synflow = SynFlow()

    def synflow_masks(sparsity):
        return [synflow.mask(model, p, s, None, jax.random.key(0), sparsity) for p, s in inits]

    for s in args.precrop:
        print(f"PreCropping at SynFlow sparsity {s}")
        masks = synflow_masks(s)
        _, acc = tr.run(model, P0, S0, mask=stack(masks), per_seed=True, label="SynFlow mask")
        record("synflow_unstructured", s, round(full * (1 - s)), acc)
        per_seed = [densities_of(m) for m in masks]
        dens = {k: float(np.mean([d[k] for d in per_seed])) for k in per_seed[0]}
        counts = channel_counts(groups, dens, inits[0][0])
        small = None
        for rescale in ("fan_in", None):
            crops = [precrop(model, p, st, groups, dens, rescale=rescale) for p, st in inits]
            small = small or crops[0][2]  # one Model object: one compiled program for both
            kept = kernel_count(crops[0][0])
            _, acc = tr.run(
                small,
                stack([c[0] for c in crops]),
                stack([c[1] for c in crops]),
                label=f"PreCrop ({rescale}) {kept} weights",
            )
            record(f"precrop_{rescale}", s, kept, acc, counts=counts)
        match = 1 - kept / full
        masks = synflow_masks(match)
        _, acc = tr.run(
            model, P0, S0, mask=stack(masks), per_seed=True, label=f"SynFlow mask at {kept}"
        )
        record("synflow_unstructured_matched", s, kept, acc)

    trained = unstack(dense.params, args.seeds)
    trained_state = unstack(dense.model_state, args.seeds)
    pruner = structured_pruner(model, *inits[0], score="l1", allocation="layerwise")
    for u in args.units:
        print(f"structured ticket: {u} of the units of every layer removed")
        smasks = [pruner(p, structured_dense_mask(groups, p), fraction=u) for p in trained]
        ticket, acc = tr.run(
            model, P0, S0, mask=stack(smasks), per_seed=True, label="structured ticket (rewound)"
        )
        compacted = [
            compact(model, p, st, m, groups)
            for p, st, m in zip(
                unstack(ticket.params, args.seeds),
                unstack(ticket.model_state, args.seeds),
                smasks,
                strict=True,
            )
        ]
        small = compacted[0][2]
        kept = kernel_count(compacted[0][0])
        masked_out = model.apply(
            apply_mask(unstack(ticket.params, args.seeds)[0], smasks[0]),
            unstack(ticket.model_state, args.seeds)[0],
            data.x_test,
            train=False,
        )[0]
        small_out = small.apply(compacted[0][0], compacted[0][1], data.x_test, train=False)[0]
        diff = float(np.abs(np.asarray(masked_out - small_out)).max())
        print(f"  compacted: {kept} of {full} kernel weights, max |logit diff| {diff:.2e}")
        record("structured_ticket", u, kept, acc, compact_max_diff=diff)

        umasks = [
            jaxticket.pruning.magnitude_pruner()(
                p, jaxticket.masks.dense_mask(p), sparsity=1 - kept / full
            )
            for p in trained
        ]
        _, acc = tr.run(
            model, P0, S0, mask=stack(umasks), per_seed=True, label=f"unstructured IMP at {kept}"
        )
        record("unstructured_ticket", u, kept, acc)

        # Rethinking: fine-tune the pruned trained weights against training from scratch.
        pruned = [
            compact(model, p, st, m, groups)
            for p, st, m in zip(trained, trained_state, smasks, strict=True)
        ]
        _, acc = tr.run(
            small,
            stack([c[0] for c in pruned]),
            stack([c[1] for c in pruned]),
            lr=args.lr / 10,
            label="Rethinking: pruned + fine-tuned",
        )
        record("rethinking_finetune", u, kept, acc)
        scratch = []
        for k, m in zip(jax.random.split(jax.random.key(7), args.seeds), smasks, strict=True):
            p, st = model.init(k)
            sp, ss, _ = compact(model, p, st, m, groups)
            scratch.append((rescaled(p, sp), ss))
        _, acc = tr.run(
            small,
            stack([c[0] for c in scratch]),
            stack([c[1] for c in scratch]),
            label="Rethinking: scratch (own fan-in)",
        )
        record("rethinking_scratch", u, kept, acc)
    out = args.out or os.path.join(
        os.path.dirname(__file__), f"tickets_{args.model}_{args.dataset}.json"
    )
    write_json(out, dict(args=vars(args), full_kernels=full, rows=rows))
    print(f"done in {time.time() - t0:.0f} s; {out}")
    for r in rows:
        print(f"| {r['method']} | {r['level']} | {r['kernels']} | {summary(r['acc'])} |")


if __name__ == "__main__":
    main()
