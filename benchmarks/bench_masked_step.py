"""Cost of a masked optimizer step: ``zero_pruned(optax.adam)`` against dense ``optax.adam``.

LeNet-300-100 (784-300-100-10, ReLU, softmax cross-entropy), batch 60, random inputs;
each variant is one jitted ``lax.scan`` of ``--steps`` Adam steps. Variants:

- ``dense``: ``optax.adam``.
- ``masked``: ``jaxticket.zero_pruned(optax.adam)`` at ``--sparsity`` (random mask on the
  three weight matrices, biases unpruned). The forward pass uses the params directly: the
  wrapper keeps pruned weights at exactly zero, so no mask multiply is needed there.
- ``cond``: ``zero_pruned`` inside JaxPruner's per-step design: each step a ``lax.cond`` asks "is
  this a mask-update step?" and re-prunes by magnitude when it is, and a second ``lax.cond``
  runs the optimizer step or skips it. The condition never holds within the run, so the
  figure is the cost of checking alone.

Repetitions of the variants are interleaved (the order rotates each round) to spread machine
drift evenly, and the median is reported.

Usage::

    python benchmarks/bench_masked_step.py --steps 500 --reps 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxticket.optim import get_mask, replace_mask, zero_pruned

SIZES = (784, 300, 100, 10)
BATCH = 60
POOL = 50  # distinct random batches, cycled through
NEVER = 10**9  # mask-update period of the ``cond`` variant: the check never fires


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--sparsity", type=float, default=0.8)
    args = parser.parse_args()

    key_params, key_mask, key_x, key_y = jax.random.split(jax.random.key(0), 4)
    params = init_lenet(key_params)
    mask = random_mask(key_mask, params, args.sparsity)
    xs = jax.random.normal(key_x, (POOL, BATCH, SIZES[0]))
    ys = jax.random.randint(key_y, (POOL, BATCH), 0, SIZES[-1])

    dense_opt = optax.adam(1.2e-3)
    masked_opt = zero_pruned(optax.adam(1.2e-3), mask)
    cond_opt = checked_every_step(masked_opt, NEVER)
    opts = {"dense": dense_opt, "masked": masked_opt, "cond": cond_opt}
    variants = {
        "dense": make_train(dense_opt, args.steps),
        "masked": make_train(masked_opt, args.steps),
        "cond": make_train(cond_opt, args.steps),
    }
    states = {name: opt.init(params) for name, opt in opts.items()}

    for name, fn in variants.items():  # compile and warm up
        jax.block_until_ready(fn(params, states[name], xs, ys))
    wall = {name: [] for name in variants}
    cpu = {name: [] for name in variants}
    names = list(variants)
    for rep in range(args.reps):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            start, start_cpu = time.perf_counter(), time.process_time()
            jax.block_until_ready(variants[name](params, states[name], xs, ys))
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)

    final, _, _ = variants["masked"](params, states["masked"], xs, ys)
    pruned_nonzero = sum(
        int(jnp.sum((final[k] != 0) & ~m)) for k, m in mask.items() if m is not None
    )
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, {os.cpu_count()} cores")
    print(f"LeNet-300-100, batch {BATCH}, {args.steps} Adam steps, sparsity {args.sparsity}")
    print(f"median of {args.reps} interleaved repetitions (wall s | process CPU s):")
    for name in names:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(f"  {name:7s} {w:7.3f} | {c:7.3f}   ({1e6 * w / args.steps:.0f} us/step wall)")
    for name in ("masked", "cond"):
        ratio_w = statistics.median(wall[name]) / statistics.median(wall["dense"])
        ratio_c = statistics.median(cpu[name]) / statistics.median(cpu["dense"])
        print(f"  {name:6s} / dense = {ratio_w:.3f} wall | {ratio_c:.3f} CPU")
    print(f"  pruned weights not exactly zero after training: {pruned_nonzero}")


def make_train(opt, steps):
    """A jitted ``lax.scan`` of ``steps`` training steps; returns (params, state, losses)."""

    @jax.jit
    def train(params, opt_state, xs, ys):
        def step(carry, i):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(loss_fn)(params, xs[i % POOL], ys[i % POOL])
            updates, opt_state = opt.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), jnp.arange(steps))
        return params, opt_state, losses

    return train


class CheckedState(NamedTuple):
    count: jax.Array
    inner_state: optax.OptState


def checked_every_step(inner, period):
    """JaxPruner's per-step design around ``inner`` (a ``zero_pruned`` optimizer): every step, one
    ``lax.cond`` may recompute the mask and a second one either skips the optimizer step (on
    mask-update steps) or runs it."""

    def init_fn(params):
        return CheckedState(jnp.zeros((), jnp.int32), inner.init(params))

    def update_fn(grads, state, params):
        is_update = state.count % period == period - 1
        inner_state = jax.lax.cond(
            is_update, magnitude_reprune, lambda s, p: s, state.inner_state, params
        )
        updates, inner_state = jax.lax.cond(
            is_update,
            lambda g, s, p: (jax.tree.map(jnp.zeros_like, g), s),
            inner.update,
            grads,
            inner_state,
            params,
        )
        return updates, CheckedState(state.count + 1, inner_state)

    return optax.GradientTransformation(init_fn, update_fn)


def magnitude_reprune(opt_state, params):
    """Per layer, keeps the alive weights whose magnitude is at least the alive median.

    The ``cond`` variant's update branch: never taken here, but real, so that XLA keeps it.
    """
    mask = get_mask(opt_state)

    def prune(m, p):
        if m is None:
            return None
        threshold = jnp.nanmedian(jnp.where(m, jnp.abs(p), jnp.nan))
        return m & (jnp.abs(p) >= threshold)

    return replace_mask(opt_state, jax.tree.map(prune, mask, params, is_leaf=_is_none))


def loss_fn(params, x, y):
    h = x
    for i in range(3):
        h = h @ params[f"w{i}"] + params[f"b{i}"]
        if i < 2:
            h = jax.nn.relu(h)
    return optax.softmax_cross_entropy_with_integer_labels(h, y).mean()


def init_lenet(key):
    params = {}
    for i, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:], strict=True)):
        key, sub = jax.random.split(key)
        params[f"w{i}"] = jax.nn.initializers.glorot_normal()(sub, (n_in, n_out))
        params[f"b{i}"] = jnp.zeros((n_out,))
    return params


def random_mask(key, params, sparsity):
    mask = {}
    for name, p in params.items():
        key, sub = jax.random.split(key)
        mask[name] = jax.random.uniform(sub, p.shape) >= sparsity if p.ndim == 2 else None
    return mask


def _is_none(x):
    return x is None


if __name__ == "__main__":
    main()
