"""Seeds in one vmapped program (``train_seeds``) against one run per seed (``train``).

For N in ``--seeds`` (default 1, 2, 4, 8), N seeds of the same configuration train either
as one vmapped program (``jaxticket.train.train_seeds``) or as N sequential calls of
``jaxticket.train.train`` (compiled once, cached). The figure of merit is wall time per
seed. Every variant is compiled in a warm-up; then all variants run in each round, the
order rotating from round to round, and the medians of ``--reps`` rounds are reported.
The script also checks that seed i of the vmapped run ends with the weights of the i-th
sequential run (same init, same data order).

Workloads: the MNIST-1D reference MLP (40-100-100-10) and LeNet-300-100 (40-300-100-10)
on MNIST-1D, Adam 1.2e-3, batch 60, evaluation every ``--eval-every`` steps.

Usage::

    python benchmarks/bench_seeds.py            # full run (a few minutes on 2 cores)
    python benchmarks/bench_seeds.py --quick    # short run
"""

from __future__ import annotations

import argparse
import statistics

import jax
import jax.numpy as jnp
import optax
from bench_engine import load_line, machine_header, paired_ratio, time_interleaved

import jaxticket.data as data_lib
import jaxticket.models as models_lib
from jaxticket.train import train, train_seeds

BATCH = 60
LEARNING_RATE = 1.2e-3
MODELS = {"mnist1d_mlp": "mlp", "mnist1d_lenet": "lenet_300_100"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=1000, help="steps per run")
    parser.add_argument("--eval-every", type=int, default=100, help="steps between evaluations")
    parser.add_argument("--reps", type=int, default=5, help="timed rounds (>= 5)")
    parser.add_argument("--seeds", default="1,2,4,8", help="comma-separated seed counts N")
    parser.add_argument(
        "--workloads",
        default="mnist1d_mlp,mnist1d_lenet",
        help="comma-separated subset of: mnist1d_mlp, mnist1d_lenet",
    )
    parser.add_argument("--quick", action="store_true", help="short run: 300 steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps = min(args.steps, 300)
    counts = [int(s) for s in args.seeds.split(",")]

    print(machine_header())
    print(
        f"steps/run {args.steps}, batch {BATCH}, eval every {args.eval_every}, "
        f"reps {args.reps} (interleaved)\n"
    )
    data = data_lib.load("mnist1d")
    for name in args.workloads.split(","):
        model = models_lib.get(
            MODELS[name], input_shape=data.input_shape, num_classes=data.num_classes
        )
        run_workload(name, model, data, counts, args)
    print(load_line("end"))


def run_workload(name, model, data, counts: list[int], args) -> None:
    n_max = max(counts)
    opt = optax.adam(LEARNING_RATE)
    keys = [jax.random.key(100 + i) for i in range(n_max)]
    inits = [model.init(jax.random.fold_in(k, 0)) for k in keys]
    common = dict(steps=args.steps, batch_size=BATCH, eval_every=args.eval_every)

    def sequential(n: int):
        results = [
            train(model, data, opt, key=keys[i], params=inits[i][0], model_state=inits[i][1],
                  **common)
            for i in range(n)
        ]  # fmt: skip
        return jax.block_until_ready([r.params for r in results])

    def vmapped(n: int):
        stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *inits[:n])
        result = train_seeds(
            model,
            data,
            opt,
            init_keys=jnp.stack(keys[:n]),
            # train(key=k) draws its data order from fold_in(k, 1): match it.
            data_keys=jnp.stack([jax.random.fold_in(k, 1) for k in keys[:n]]),
            params=stacked[0],
            model_state=stacked[1],
            **common,
        )
        return jax.block_until_ready(result.params)

    variants = {}
    for n in counts:
        variants[f"vmap {n}"] = lambda n=n: vmapped(n)
        variants[f"seq {n}"] = lambda n=n: sequential(n)

    # Warm-up (compiles one program per N, and the single-seed one) and an equality check.
    seq_params = sequential(n_max)
    vmap_params = vmapped(n_max)
    diffs = [
        max(
            float(jnp.max(jnp.abs(v[i] - s)))
            for v, s in zip(jax.tree.leaves(vmap_params), jax.tree.leaves(p), strict=True)
        )
        for i, p in enumerate(seq_params)
    ]
    for fn in variants.values():
        fn()

    print(f"## {name}: {model.name}, layers {[p.shape for p in jax.tree.leaves(inits[0][0])]}")
    print(load_line("start"))
    times, cpu = time_interleaved(variants, args.reps)
    print(load_line("after"))
    print(
        f"vmapped seed i vs sequential run i, final weights max |Δ| per seed: median "
        f"{statistics.median(diffs):.1e}, max {max(diffs):.1e} (rounding differences of batched "
        "matmuls, amplified by Adam where a weight's gradient is near its eps)\n"
    )
    print(
        "| N | vmapped s/seed | sequential s/seed | vmap speedup (paired) "
        "| vmapped CPU s/seed | sequential CPU s/seed | vmapped steps/s/seed |"
    )
    print("|---|---|---|---|---|---|---|")
    for n in counts:
        v = statistics.median(times[f"vmap {n}"]) / n
        s = statistics.median(times[f"seq {n}"]) / n
        speedup = paired_ratio(times[f"seq {n}"], times[f"vmap {n}"])
        v_cpu = statistics.median(cpu[f"vmap {n}"]) / n
        s_cpu = statistics.median(cpu[f"seq {n}"]) / n
        print(
            f"| {n} | {v:.3f} | {s:.3f} | {speedup:.2f} | {v_cpu:.3f} | {s_cpu:.3f} "
            f"| {args.steps / v:,.0f} |"
        )
    print()


if __name__ == "__main__":
    main()
