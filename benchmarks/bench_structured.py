"""Inference speed of the smaller networks structured pruning gives, and of BCOO sparse kernels.

Two tables, each measured side by side in one process (interleaved rounds, the order
rotating each round, medians after an untimed call that compiles), eval-mode forward passes
under ``jax.jit``:

(a) **Compacted vs dense** (issue 13): Conv-4, VGG-16 and ResNet-20 on CIFAR-sized random
    input (32×32×3, batch ``--batch``, 10 classes). For each removed fraction (50 %, 75 %),
    a random structured keep removes that fraction of the units of every prunable
    dependency group (``jaxticket.structured.dependency_groups``: conv channels, hidden
    dense units, ResNet stages tied through the residual additions; never the logits), and
    ``jaxticket.structured.compact`` slices them away. The table gives the FLOP reduction
    (dense FLOPs ÷ compacted FLOPs, both from XLA's cost analysis of the compiled forward
    pass: ``jax.jit(f).lower(...).compile().cost_analysis()["flops"]``), the speedup
    (median dense time ÷ median compacted time, wall and process CPU), and whether the
    speedup reaches 0.7 × the FLOP reduction. Correctness is checked on the way: the
    compacted logits equal the masked dense network's (max abs difference printed).
(b) **BCOO vs dense** at 90, 95, 98 and 99 % unstructured sparsity: LeNet-300-100
    (784-300-100-10), every kernel pruned at random to the sparsity; ``dense`` is the
    forward pass with the masked (zeroed) dense kernels, ``BCOO`` is
    ``jaxticket.structured.sparse_inference.sparse_apply`` on ``to_bcoo(params, mask)``.
    Batches ``--batch`` and 1. The crossover is the lowest sparsity at which BCOO is faster.

Usage::

    nice -n 10 python benchmarks/bench_structured.py           # full run (a few minutes)
    nice -n 10 python benchmarks/bench_structured.py --quick   # smoke run (batch 16, 2 rounds)
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from bench_engine import load_line, machine_header, time_interleaved

import jaxticket.models as models_lib
from jaxticket.masks import apply_mask
from jaxticket.structured import dependency_groups
from jaxticket.structured.compact import compact
from jaxticket.structured.masks import expand_keep
from jaxticket.structured.sparse_inference import sparse_apply, to_bcoo

CNNS = ("conv4", "vgg16", "resnet20")
REMOVED = (0.5, 0.75)
SPARSITIES = (0.90, 0.95, 0.98, 0.99)
TARGET = 0.7


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--reps", type=int, default=5, help="timed rounds per table row")
    parser.add_argument("--cnn-reps", type=int, default=3, help="timed rounds, table (a)")
    parser.add_argument("--quick", action="store_true", help="batch 16, 2 rounds")
    parser.add_argument("--models", default=",".join(CNNS), help="comma-separated CNNs")
    parser.add_argument("--skip-cnn", action="store_true", help="only the BCOO table")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.reps, args.cnn_reps = 16, 2, 2
    print(machine_header())
    print(
        f"batch {args.batch}; timed rounds after a compiling call: {args.cnn_reps} (a), "
        f"{args.reps} (b)\n"
    )
    if not args.skip_cnn:
        compacted_table(args.models.split(","), args.batch, args.cnn_reps)
        print(load_line("after table a") + "\n")
    bcoo_table(args.batch, args.reps)
    print(load_line("end"))


# ---------------------------------------------------------------------------------------
# (a) compacted vs dense


def compacted_table(names: list[str], batch: int, reps: int) -> None:
    print("(a) compacted vs dense, eval forward, input 32x32x3")
    print(
        "| model | removed | params dense → compact | GFLOP dense | GFLOP compact | FLOP "
        "reduction | dense ms | compact ms | speedup wall | speedup CPU | ≥ 0.7 × FLOP "
        "(wall / CPU) | max abs diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        model = models_lib.get(name, input_shape=(32, 32, 3), num_classes=10)
        params, state = jax.jit(model.init)(jax.random.key(0))
        groups = dependency_groups(model, params, state)
        x = jnp.asarray(np.random.default_rng(0).standard_normal((batch, 32, 32, 3)), jnp.float32)
        variants = {"dense": (model, params, state)}
        checks = {}
        for removed in REMOVED:
            keep = random_keep(groups, removed, seed=int(removed * 100))
            small_params, small_state, small = compact(model, params, state, keep, groups)
            variants[f"{removed:.0%}"] = (small, small_params, small_state)
            checks[f"{removed:.0%}"] = max_diff(
                model,
                params,
                state,
                expand_keep(groups, keep, params),
                small,
                small_params,
                small_state,
                x[:16],
            )
        fns, flops, sizes = {}, {}, {}
        for label, (m, p, s) in variants.items():
            forward = jax.jit(functools.partial(logits, m))
            compiled = forward.lower(p, s, x).compile()
            flops[label] = cost_flops(compiled)
            sizes[label] = sum(int(np.size(leaf)) for leaf in jax.tree.leaves(p))
            jax.block_until_ready(compiled(p, s, x))
            fns[label] = functools.partial(run_blocking, compiled, p, s, x)
        wall, cpu = time_interleaved(fns, reps)
        dense_wall, dense_cpu = statistics.median(wall["dense"]), statistics.median(cpu["dense"])
        for label in checks:
            reduction = flops["dense"] / flops[label]
            sp_wall = dense_wall / statistics.median(wall[label])
            sp_cpu = dense_cpu / statistics.median(cpu[label])
            met = "/".join("yes" if s >= TARGET * reduction else "no" for s in (sp_wall, sp_cpu))
            print(
                f"| {name} | {label} | {sizes['dense']:,} → {sizes[label]:,} | "
                f"{flops['dense'] / 1e9:.2f} | {flops[label] / 1e9:.2f} | {reduction:.2f}× | "
                f"{1e3 * dense_wall:.0f} | {1e3 * statistics.median(wall[label]):.0f} | "
                f"{sp_wall:.2f}× | {sp_cpu:.2f}× | {met} ({sp_wall / reduction:.2f} / "
                f"{sp_cpu / reduction:.2f}) | {checks[label]:.1e} |",
                flush=True,
            )


def random_keep(groups, removed: float, seed: int) -> dict[str, np.ndarray]:
    """A random structured keep: ``removed`` of the units of every prunable group go."""
    rng = np.random.default_rng(seed)
    keep = {}
    for g in groups:
        if not g.prunable:
            continue
        n_keep = max(1, round(g.size * (1 - removed)))
        k = np.zeros(g.size, bool)
        k[rng.choice(g.size, n_keep, replace=False)] = True
        keep[g.name] = k
    return keep


def max_diff(model, params, state, mask, small, small_params, small_state, x) -> float:
    """Max abs difference between the masked dense and the compacted network's logits."""
    ref = jax.jit(lambda p, m, s, x: logits(model, apply_mask(p, m), s, x))(params, mask, state, x)
    out = jax.jit(functools.partial(logits, small))(small_params, small_state, x)
    return float(jnp.max(jnp.abs(ref - out)))


# ---------------------------------------------------------------------------------------
# (b) BCOO vs dense


def bcoo_table(batch: int, reps: int) -> None:
    print("(b) BCOO vs dense (masked kernels), LeNet-300-100 784-300-100-10, eval forward")
    print(
        "| batch | sparsity | nonzeros | dense ms | BCOO ms | BCOO ÷ dense (wall) | "
        "BCOO ÷ dense (CPU) | max abs diff |"
    )
    print("|---|---|---|---|---|---|---|---|")
    model = models_lib.get("lenet_300_100", input_shape=(784,), num_classes=10)
    params, state = jax.jit(model.init)(jax.random.key(0))
    dense_forward = jax.jit(functools.partial(logits, model))
    sparse_forward = jax.jit(functools.partial(sparse_apply, model))
    ratios: dict[int, list[tuple[float, float]]] = {}
    for b in dict.fromkeys((batch, 1)):
        x = jnp.asarray(np.random.default_rng(1).standard_normal((b, 784)), jnp.float32)
        for sparsity in SPARSITIES:
            mask = random_mask(params, sparsity, seed=int(sparsity * 1000))
            masked = apply_mask(params, mask)
            sparse_params = to_bcoo(params, mask)
            diff = float(
                jnp.max(
                    jnp.abs(
                        dense_forward(masked, state, x) - sparse_forward(sparse_params, state, x)
                    )
                )
            )
            dense_call = functools.partial(run_blocking, dense_forward, masked, state, x)
            sparse_call = functools.partial(run_blocking, sparse_forward, sparse_params, state, x)
            calls = calls_per_round(dense_call)
            fns = {
                "dense": functools.partial(repeat, dense_call, calls),
                "bcoo": functools.partial(repeat, sparse_call, calls),
            }
            wall, cpu = time_interleaved(fns, reps)
            wall = {k: [t / calls for t in v] for k, v in wall.items()}
            ratio_wall = statistics.median(wall["bcoo"]) / statistics.median(wall["dense"])
            ratio_cpu = statistics.median(cpu["bcoo"]) / statistics.median(cpu["dense"])
            ratios.setdefault(b, []).append((sparsity, ratio_wall))
            nonzeros = sum(int(np.sum(m)) for m in jax.tree.leaves(mask))
            print(
                f"| {b} | {sparsity:.0%} | {nonzeros:,} | "
                f"{1e3 * statistics.median(wall['dense']):.2f} | "
                f"{1e3 * statistics.median(wall['bcoo']):.2f} | {ratio_wall:.2f} | "
                f"{ratio_cpu:.2f} | {diff:.1e} |",
                flush=True,
            )
    for b, rows in ratios.items():
        faster = [s for i, (s, _) in enumerate(rows) if all(r < 1 for _, r in rows[i:])]
        where = f"from {faster[0]:.0%} on" if faster else "at none of these sparsities"
        print(f"batch {b}: BCOO faster than dense (wall) {where}")


def random_mask(params, sparsity: float, seed: int):
    """Every kernel pruned at random to exactly ``sparsity`` (rounded per leaf)."""
    rng = np.random.default_rng(seed)

    def leaf_mask(p):
        if p.ndim < 2:
            return None
        flat = np.zeros(p.size, bool)
        flat[rng.choice(p.size, max(1, round(p.size * (1 - sparsity))), replace=False)] = True
        return flat.reshape(p.shape)

    return jax.tree.map(leaf_mask, params)


# ---------------------------------------------------------------------------------------
# helpers


def logits(model, params, state, x):
    return model.apply(params, state, x, train=False)[0]


def cost_flops(compiled) -> float:
    """FLOPs of a compiled program from XLA's cost analysis (a dict, or a list of one)."""
    cost = compiled.cost_analysis()
    if isinstance(cost, list | tuple):
        cost = cost[0]
    return float(cost["flops"])


def calls_per_round(call, seconds: float = 0.05) -> int:
    """Calls per timed round so that one round of the faster variant lasts about ``seconds``."""
    call()
    start = time.perf_counter()
    call()
    return max(1, min(1000, round(seconds / max(time.perf_counter() - start, 1e-6))))


def repeat(call, n: int) -> None:
    for _ in range(n):
        call()


def run_blocking(fn, *args):
    return jax.block_until_ready(fn(*args))


if __name__ == "__main__":
    main()
