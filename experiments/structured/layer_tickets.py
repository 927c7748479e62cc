"""Layer tickets on ResNet-20 (digits, 8x8): IMP over residual blocks, blocks scored at
initialization, random block removal, and compaction to the shallower ResNet.

    python experiments/structured/layer_tickets.py            # 3 seeds, 3 levels of 1 block

Per seed: ``block_imp`` (train ``--steps`` steps of Adam, remove the removable block with the
smallest mean |BatchNorm scale| of its branch's last BatchNorm, rewind to the init, retrain;
``--levels`` times); then, from the same initialization, the same number of blocks removed
before training by SNIP (one batch of 256) or SynFlow summed over each block, or at random,
and trained the same way. The final IMP ticket is compacted with ``compact_blocks`` and its
logits compared with the masked network's on the test set.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np
import optax

import jaxticket
from jaxticket.masks import apply_mask
from jaxticket.structured import layer_imp, layers

sys.path.insert(0, os.path.dirname(__file__))
from common import summary, write_json  # noqa: E402


def imp_levels(args, model, data, opt, key, common, params0, rows, seed) -> None:
    """Block IMP for one seed, and the compaction check of its last level."""
    levels = layer_imp.block_imp(
        model, data, opt, key=key, levels=args.levels, score="bn_scale", **common
    )
    for lv in levels:
        rows.append(
            dict(
                seed=seed,
                method="imp",
                level=lv.level,
                removed=lv.removed,
                acc=lv.test_accuracy,
            )
        )
        print(f"seed {seed} IMP level {lv.level} {lv.removed}: {lv.test_accuracy:.4f}", flush=True)
    last = levels[-1]
    mask = layers.block_mask(params0, last.removed)
    masked = apply_mask(last.result.params, mask)
    sp, ss, shallow = layers.compact_blocks(model, masked, last.result.model_state, last.removed)
    diff = float(
        np.abs(
            np.asarray(
                model.apply(masked, last.result.model_state, data.x_test, train=False)[0]
                - shallow.apply(sp, ss, data.x_test, train=False)[0]
            )
        ).max()
    )
    full_n = sum(np.size(w) for w in jax.tree.leaves(params0))
    small_n = sum(np.size(w) for w in jax.tree.leaves(sp))
    rows.append(
        dict(
            seed=seed,
            method="compact",
            removed=last.removed,
            max_diff=diff,
            params=(int(small_n), int(full_n)),
        )
    )
    print(f"  compacted: {small_n}/{full_n} params, max |logit diff| {diff:.2e}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--random-only", action="store_true", help="only the random-block control")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "layer_tickets.json"))
    args = ap.parse_args()
    t0 = time.time()
    data = jaxticket.data.load("digits")
    model = jaxticket.models.get(
        "resnet20", input_shape=data.input_shape, num_classes=data.num_classes, width=args.width
    )
    opt = optax.adam(args.lr)
    common = dict(steps=args.steps, batch_size=args.batch)
    rows = []
    for seed in range(args.seeds):
        key = jax.random.key(seed)
        params0, state0 = model.init(key)
        if not args.random_only:
            imp_levels(args, model, data, opt, key, common, params0, rows, seed)
        batch_idx = jax.random.permutation(jax.random.key(100 + seed), data.x_train.shape[0])
        batch = (data.x_train[batch_idx[:256]], data.y_train[batch_idx[:256]])
        blocks = layers.removable_blocks(params0)
        rng = np.random.default_rng(seed)
        drawn = {str(b) for b in rng.choice(blocks, args.levels, replace=False)}  # once
        choices = (
            {}
            if args.random_only
            else {
                "snip_init": layer_imp.init_block_ticket(
                    model, params0, state0, args.levels, score="snip", batch=batch
                )[0],
                "synflow_init": layer_imp.init_block_ticket(
                    model, params0, state0, args.levels, score="synflow"
                )[0],
            }
        )
        choices["random"] = tuple(b for b in blocks if b in drawn)
        for name, removed in choices.items():
            result = jaxticket.train.train(
                model,
                data,
                opt,
                key=key,
                params=params0,
                model_state=state0,
                mask=layers.block_mask(params0, removed),
                **common,
            )
            acc = float(result.history["test_accuracy"][-1])
            rows.append(dict(seed=seed, method=name, level=args.levels, removed=removed, acc=acc))
            print(f"seed {seed} {name} {removed}: {acc:.4f}", flush=True)
    write_json(args.out, dict(args=vars(args), rows=rows))
    print(f"done in {time.time() - t0:.0f} s")
    for method in ("imp", "snip_init", "synflow_init", "random"):
        for level in range(args.levels + 1):
            accs = [r["acc"] for r in rows if r["method"] == method and r.get("level") == level]
            if accs:
                print(f"| {method} | {level} | {summary(accs)} |")


if __name__ == "__main__":
    main()
