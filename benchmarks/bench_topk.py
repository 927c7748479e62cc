"""Global top-k versus one elementwise pass over the same weights, timed side by side.

Usage::

  python benchmarks/bench_topk.py --params 100_000_000 --leaves 4
  python benchmarks/bench_topk.py --layout bert-base   # 73 kernels, 108M weights
  python benchmarks/bench_topk.py --layout resnet50    # 50 kernels, 23M weights

Prints, for each kept fraction, the median wall time of ``topk_mask`` (jitted, ``k``
traced) and of a jitted ``jnp.where(mask, p, 0)`` over the same leaves, and their ratio.
CPU time (all threads of this process) is printed too: on a shared machine it is the
steadier measure of work.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxticket.pruning.topk import topk_mask

_BOTTLENECKS = [
    [(1, 1, c_in, c), (3, 3, c, c), (1, 1, c, 4 * c)]
    for c_in, c in [(64, 64), (256, 64), (256, 64)]
    + [(256, 128)]
    + [(512, 128)] * 3
    + [(512, 256)]
    + [(1024, 256)] * 5
    + [(1024, 512)]
    + [(2048, 512)] * 2
]
LAYOUTS = {
    # Conv kernels (HWIO) and the classifier of a ResNet-50, projections left out.
    "resnet50": [(7, 7, 3, 64), *(s for block in _BOTTLENECKS for s in block), (2048, 1000)],
    # Attention and MLP kernels of BERT-base's 12 layers.
    "bert-base": ([(768, 768)] * 4 + [(768, 3072), (3072, 768)]) * 12 + [(30522, 768)],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, default=100_000_000)
    parser.add_argument("--leaves", type=int, default=4)
    parser.add_argument("--keep", type=float, nargs="+", default=[0.2, 0.8])
    parser.add_argument("--alive", type=float, default=0.9, help="fraction alive")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--dist", choices=["normal", "abs", "ints"], default="normal")
    parser.add_argument(
        "--layout",
        choices=["uniform", *LAYOUTS],
        default="uniform",
        help="uniform: --leaves equal leaves of --params in all; else a model's kernels",
    )
    args = parser.parse_args()

    if args.layout == "uniform":
        n = args.params // args.leaves
        cols = 4096 if n % 4096 == 0 else next(c for c in range(min(n, 5000), 0, -1) if n % c == 0)
        shapes = [(n // cols, cols)] * args.leaves
    else:
        shapes = LAYOUTS[args.layout]
    key = jax.random.PRNGKey(0)
    params, alive = [], []
    for i, shape in enumerate(shapes):
        p = jax.random.normal(jax.random.fold_in(key, i), shape)
        if args.dist == "abs":
            p = jnp.abs(p)
        elif args.dist == "ints":
            p = jnp.round(p * 100)
        params.append(p)
        alive.append(jax.random.uniform(jax.random.fold_in(key, 100 + i), p.shape) < args.alive)
    jax.block_until_ready((params, alive))
    n_alive = int(sum(a.sum() for a in alive))

    elementwise = jax.jit(lambda p, m: jax.tree.map(lambda p, m: jnp.where(m, p, 0), p, m))
    select = jax.jit(topk_mask)

    machine = f"{jax.devices()[0].platform}, {platform.machine()}, {os.cpu_count()} cpus"
    print(
        f"jax {jax.__version__}, {machine}, layout={args.layout}: {len(params)} leaves,"
        f" {sum(p.size for p in params):,} float32, {n_alive:,} alive, dist={args.dist}"
    )
    for keep in args.keep:
        k = jnp.int32(round(keep * n_alive))
        masks = select(params, alive, k)
        assert int(sum(m.sum() for m in masks)) == int(k)
        jax.block_until_ready(elementwise(params, alive))
        times = {"elementwise": [], "topk": []}
        cpu = {"elementwise": [], "topk": []}
        for _ in range(args.reps):  # interleaved so that load changes hit both alike
            for name, fn, a in (
                ("elementwise", elementwise, (params, alive)),
                ("topk", select, (params, alive, k)),
            ):
                t, c = time.perf_counter(), time.process_time()
                jax.block_until_ready(fn(*a))
                times[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c)
        w = {name: float(np.median(v)) for name, v in times.items()}
        c = {name: float(np.median(v)) for name, v in cpu.items()}
        print(
            f"keep {keep:.0%}: elementwise {w['elementwise'] * 1e3:7.1f} ms"
            f" | top-k {w['topk'] * 1e3:7.1f} ms | ratio {w['topk'] / w['elementwise']:.2f}x wall"
            f"  (cpu: {c['elementwise'] * 1e3:.0f} vs {c['topk'] * 1e3:.0f} ms,"
            f" {c['topk'] / c['elementwise']:.2f}x)"
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    inputs = sum(p.nbytes + a.nbytes for p, a in zip(params, alive, strict=True)) / 2**30
    print(f"peak RSS {rss:.2f} GiB (inputs {inputs:.2f} GiB)")


if __name__ == "__main__":
    main()
