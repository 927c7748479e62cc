"""Layer collapse at initialization: how far each criterion compresses a deep, narrow MLP.

The SynFlow paper's central claim (Tanaka et al. 2020, Fig. 1/3): single-shot
criteria computed at initialization (magnitude, SNIP, GraSP) prune whole layers away
before they must, while iterative SynFlow reaches the largest compression before any
layer collapses (it can approach the maximal compression ``total / n_layers``).

This script prunes a 10-layer MLP (9 hidden layers of 100, MNIST-1D inputs of 40, 10
classes; 85,000 kernel weights, biases never pruned) at initialization, without
training, with every method at every compression ``10^x`` of a grid (compression =
total / alive, sparsity = 1 − 1/compression), ``min_keep=0`` so a layer may lose every
weight, and records per method and seed the largest grid compression before the first
collapsed layer (``jaxticket.collapsed_leaves``):

* ``random``: global uniform random scores;
* ``magnitude``: global |w| at init;
* ``snip``: global |g ⊙ w| on a batch of 256 training examples;
* ``grasp``: global, the paper's loss temperature 200, the same batch;
* ``synflow``: ``jaxticket.pruning.synflow_prune``, 100 rounds, global.

All but SynFlow prune in one shot (a single scoring round), as in the SynFlow paper's
comparison. Each method is one jitted function with a traced sparsity, so the grid
reuses one compiled program per method.

Usage::

    python experiments/synflow_collapse/run.py            # writes results.md next to it
    python experiments/synflow_collapse/run.py --quick --out /tmp/collapse.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxticket
from jaxticket import pruning

HERE = Path(__file__).parent
METHODS = ("random", "magnitude", "snip", "grasp", "synflow")


def _prune_fns(model, rounds: int):
    """method -> jitted ``fn(params, key, x, y, sparsity) -> mask`` (min_keep=0, global)."""

    def apply_fn(p, x):
        return model.apply(p, {}, x, train=False, key=None)[0]

    def ce_loss(p, batch):
        x, y = batch
        return optax.softmax_cross_entropy_with_integer_labels(apply_fn(p, x), y).mean()

    one_shot = {
        "random": pruning.random_pruner("global", min_keep=0),
        "magnitude": pruning.magnitude_pruner("global", min_keep=0),
        "snip": pruning.snip_pruner(ce_loss, "global", min_keep=0),
        "grasp": pruning.grasp_pruner(pruning.grasp_loss(apply_fn, 200.0), "global", min_keep=0),
    }
    fns = {}
    for name, pruner in one_shot.items():

        def fn(params, key, x, y, sparsity, pruner=pruner):
            mask = jaxticket.dense_mask(params)
            return pruner(params, mask, sparsity=sparsity, key=key, batch=(x, y))

        fns[name] = jax.jit(fn)

    def synflow_fn(params, key, x, y, sparsity):
        del key, x, y  # data-free
        mask = jaxticket.dense_mask(params)
        return pruning.synflow_prune(
            apply_fn, model.input_shape, params, mask, sparsity, rounds=rounds, min_keep=0
        )

    fns["synflow"] = jax.jit(synflow_fn)
    return fns


def run(*, hidden, exponents, seeds, rounds, batch_size, zero_bias=False, methods=METHODS):
    """Prunes at every grid point; returns ``{method: [per-seed record]}`` and the total.

    ``zero_bias``: set every bias to 0 after the init (the SynFlow paper's models init
    biases to 0; with nonzero biases SynFlow's flow can bypass the early layers).

    A record holds ``max_compression`` (largest grid compression, measured as total/alive,
    with no collapsed layer at it and at every smaller grid point; 1.0 if the first point
    already collapses), ``first_collapse`` (the first grid compression with a collapsed
    layer, None if none) and ``first_collapsed_layers`` (their paths).
    """
    ds = jaxticket.data.load("mnist1d")
    model = jaxticket.models.get(
        "mlp", input_shape=ds.input_shape, num_classes=ds.num_classes, hidden=hidden
    )
    fns = _prune_fns(model, rounds)
    results = {m: [] for m in methods}
    total = None
    for seed in seeds:
        key = jax.random.key(seed)
        k_init, k_batch, k_rand = jax.random.split(key, 3)
        params, _ = model.init(k_init)
        if zero_bias:
            params = {k: {**v, "bias": jnp.zeros_like(v["bias"])} for k, v in params.items()}
        idx = jax.random.choice(k_batch, ds.x_train.shape[0], (batch_size,), replace=False)
        x, y = ds.x_train[idx], ds.y_train[idx]
        total = int(jaxticket.count_total(jaxticket.dense_mask(params)))
        for method in methods:
            record = {"seed": seed, "max_compression": 1.0, "first_collapse": None}
            record["first_collapsed_layers"] = []
            for e in exponents:
                sparsity = 1.0 - 10.0 ** (-e)
                mask = fns[method](params, k_rand, x, y, jnp.float32(sparsity))
                alive = int(jaxticket.count_alive(mask))
                compression = total / max(alive, 1)
                collapsed = jaxticket.collapsed_leaves(mask)
                if collapsed:
                    record["first_collapse"] = compression
                    record["first_collapsed_layers"] = collapsed
                    break
                record["max_compression"] = compression
            results[method].append(record)
    return results, total


def _layer_name(path: str) -> str:
    return path.split("/")[0]


def markdown(by_init, total, *, hidden, exponents, seeds, rounds, batch_size, command, wall):
    """The results tables (one per init) and their setting as a Markdown document."""
    step = exponents[1] - exponents[0] if len(exponents) > 1 else 0.0
    lines = [
        "# Layer collapse at initialization: a 10-layer MLP on MNIST-1D",
        "",
        f"Model: `mlp`, hidden={tuple(hidden)} ({len(hidden) + 1} weight layers, {total:,} "
        "kernel weights, biases not pruned); MNIST-1D inputs (40), "
        f"10 classes. Seeds: {list(seeds)} (each seed: its own init, batch and random key). "
        f"Grid: compression 10^x for x = {exponents[0]:g}, {exponents[0] + step:g}, ..., "
        f"{exponents[-1]:g} (step {step:g}); compression = total / alive, sparsity = "
        "1 − 1/compression. All methods global, `min_keep=0`, at initialization, no "
        f"training. SNIP and GraSP (temperature 200) on {batch_size} training examples; "
        f"random, magnitude, SNIP and GraSP one-shot (one scoring round), SynFlow "
        f"{rounds} rounds (`synflow_prune`, exponential schedule), as in the SynFlow paper's "
        "comparison.",
        "",
        "**Max compression** = the largest grid compression (measured total/alive) with no "
        "collapsed layer (`jaxticket.collapsed_leaves`) there and at every smaller grid "
        "point; **first collapse** = the next grid point, where a layer had no weight left. "
        f"The upper bound for any method is total / {len(hidden) + 1} layers = "
        f"{total / (len(hidden) + 1):,.0f} (10^{np.log10(total / (len(hidden) + 1)):.2f}).",
    ]
    for init, results in by_init.items():
        lines += _table(init, results)
    lines += ["", f"Command: `{command}`", "", f"Wall time: {wall:.0f} s."]
    return "\n".join(lines) + "\n"


def _table(init, results):
    lines = [
        "",
        f"## Init: {init}",
        "",
        "| method | max compression mean (log10) | min | max | first collapse (per seed) "
        "| first collapsed layers |",
        "|---|---|---|---|---|---|",
    ]
    means = {}
    for method, records in results.items():
        mc = np.array([r["max_compression"] for r in records])
        means[method] = np.log10(mc).mean()
        firsts = ", ".join(
            "none" if r["first_collapse"] is None else f"{r['first_collapse']:,.0f}"
            for r in records
        )
        layers = sorted({_layer_name(p) for r in records for p in r["first_collapsed_layers"]})
        lines.append(
            f"| {method} | {mc.mean():,.0f} ({np.log10(mc).mean():.2f}) | {mc.min():,.0f} | "
            f"{mc.max():,.0f} | {firsts} | {', '.join(layers) or '-'} |"
        )
    best = max(means, key=means.get)
    others = max(v for k, v in means.items() if k != "synflow") if len(means) > 1 else None
    verdict = "yes" if others is None or means.get("synflow", -1) > others else "no"
    lines += [
        "",
        f"Furthest (mean log10 max compression): **{best}**. SynFlow strictly furthest: "
        f"**{verdict}**.",
    ]
    return lines


def main(argv=None):
    """Runs the experiment and writes the Markdown table; returns the results dict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke-test setting")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--step", type=float, default=0.1, help="grid step in log10")
    parser.add_argument("--out", type=Path, default=HERE / "results.md")
    args = parser.parse_args(argv)
    if args.quick:
        setting = dict(hidden=(8,) * 2, seeds=[0], rounds=3, batch_size=16)
        exponents = [0.5, 1.0, 1.5, 2.0]
    else:
        setting = dict(hidden=(100,) * 9, seeds=list(range(args.seeds)), rounds=100)
        setting["batch_size"] = 256
        n = int(round((4.0 - 0.5) / args.step)) + 1
        exponents = [round(0.5 + i * args.step, 6) for i in range(n)]
    start = time.perf_counter()
    inits = {
        "PyTorch default (biases uniform ±1/√fan_in)": False,
        "PyTorch default weights, biases set to 0 (as the SynFlow paper's models)": True,
    }
    results = {}
    for init, zero_bias in inits.items():
        results[init], total = run(exponents=exponents, zero_bias=zero_bias, **setting)
    wall = time.perf_counter() - start
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    command = f"python experiments/synflow_collapse/run.py {argv_text}".strip()
    text = markdown(results, total, exponents=exponents, command=command, wall=wall, **setting)
    args.out.write_text(text)
    print(text)
    return results


if __name__ == "__main__":
    main()
