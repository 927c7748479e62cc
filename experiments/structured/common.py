"""Shared helpers of the structured-ticket experiments: seed stacking, training, counting."""

from __future__ import annotations

import json
import time

import jax
import numpy as np
import optax

import jaxticket


def stack(trees):
    """Stacks per-seed pytrees along a new leading axis (None leaves stay None)."""
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def unstack(tree, n):
    """The ``n`` per-seed pytrees of a stacked one."""
    return [jax.tree.map(lambda x, i=i: np.asarray(x[i]), tree) for i in range(n)]


def kernel_count(params, mask=None) -> int:
    """Alive entries of the ``ndim >= 2`` leaves (kernels) of one network (all without a mask;
    a mask's ``ndim >= 2`` leaves are the kernels, so its alive count is theirs)."""
    if mask is not None:
        return int(sum(np.sum(m) for m in jax.tree.leaves(mask) if np.ndim(m) >= 2))
    return int(sum(np.size(w) for w in jax.tree.leaves(params) if np.ndim(w) >= 2))


def summary(values) -> str:
    """``mean ± std [min, max]`` in percent of accuracies in [0, 1]."""
    v = 100 * np.asarray(values, np.float64)
    return f"{v.mean():.2f} ± {v.std():.2f} [{v.min():.2f}, {v.max():.2f}]"


class Trainer:
    """Trains stacked seeds with one optimizer, steps and data order per seed."""

    def __init__(self, data, *, steps, batch_size, lr, seeds, eval_every=None):
        self.data, self.steps, self.batch, self.lr = data, steps, batch_size, lr
        self.seeds = seeds
        self.eval_every = eval_every
        self.data_keys = jax.random.split(jax.random.key(1), seeds)
        self.init_keys = jax.random.split(jax.random.key(0), seeds)

    def run(self, model, params, state, *, mask=None, per_seed=False, lr=None, label=""):
        t = time.time()
        result = jaxticket.train.train_seeds(
            model,
            self.data,
            optax.adam(self.lr if lr is None else lr),
            init_keys=self.init_keys,
            data_keys=self.data_keys,
            steps=self.steps,
            batch_size=self.batch,
            eval_every=self.eval_every,
            params=params,
            model_state=state,
            mask=mask,
            mask_per_seed=per_seed,
        )
        acc = np.asarray(result.history["test_accuracy"])[:, -1]
        print(f"  {label:<44s} {summary(acc)}  ({time.time() - t:.0f} s)", flush=True)
        return result, acc


def write_json(path, obj) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, default=float)
