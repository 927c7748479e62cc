"""Linear mode connectivity: all pairs × all α in one program against a Python loop.

8 seeds of LeNet-300-100 (40-300-100-10, MNIST-1D shapes and data, 1000 test examples or the first
``--examples``),
trained briefly from a shared init with different data orders (``--steps``, Adam 1e-3,
batch 60; ``--steps 0`` keeps the random inits). Both sides compute the test error and loss
of (1 − α)·θ_i + α·θ_j for the 28 pairs i < j and 30 α in [0, 1] (840 networks):

- ``one program``: ``jaxticket.stability.interpolate.path_errors`` (one compiled
  ``lax.map`` over chunks of ``--networks-per-step`` vmapped networks);
- ``python loop``: a loop over pairs and α calling one jitted function that interpolates
  two end-point networks (given as separate trees, sliced once outside the timing) and
  evaluates the result with ``jaxticket.train.evaluate``.

The two results are compared before any time is printed (errors equal up to one test
example per network: vmapped and single matmuls round differently at near ties). Each side gets an
untimed warm-up call (compile + one run, reported), then ``--reps`` interleaved timed
calls; medians and the paired ratio, wall and process CPU.

Usage::

    python benchmarks/bench_stability.py           # 5 timed rounds
    python benchmarks/bench_stability.py --quick   # 2 rounds, 100 training steps
    python benchmarks/bench_stability.py --examples 100   # less compute per network
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from bench_engine import load_line, machine_header, paired_ratio, time_interleaved  # noqa: E402

from jaxticket import data as datasets  # noqa: E402
from jaxticket import models  # noqa: E402
from jaxticket.stability.interpolate import (  # noqa: E402
    all_pairs,
    alpha_grid,
    barriers,
    interpolate,
    path_errors,
    summary,
)
from jaxticket.train import train_seeds  # noqa: E402
from jaxticket.train.evaluate import evaluate  # noqa: E402

SEEDS = 8


def trained_seeds(model, ds, steps: int):
    """8 seeds from one init, differing in data order (the instability setting)."""
    init_keys = jax.numpy.stack([jax.random.key(0)] * SEEDS)
    if steps == 0:
        return jax.vmap(model.init)(jax.random.split(jax.random.key(0), SEEDS))
    out = train_seeds(
        model,
        ds,
        optax.adam(1e-3),
        init_keys=init_keys,
        data_keys=jax.random.split(jax.random.key(1), SEEDS),
        steps=steps,
        batch_size=60,
    )
    return out.params, out.model_state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds, 100 training steps")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--networks-per-step", type=int, default=16)
    parser.add_argument(
        "--examples", type=int, default=None, help="evaluate on the first N test examples only"
    )
    args = parser.parse_args()
    reps, steps = (2, 100) if args.quick else (args.reps, args.steps)
    print(machine_header())

    ds = datasets.load("mnist1d")
    if args.examples is not None:
        ds = ds.replace(x_test=ds.x_test[: args.examples], y_test=ds.y_test[: args.examples])
    model = models.get("lenet_300_100", input_shape=ds.input_shape, num_classes=ds.num_classes)
    params, state = trained_seeds(model, ds, steps)
    pairs, alphas = all_pairs(SEEDS), alpha_grid(30)
    print(f"{len(pairs)} pairs x {len(alphas)} alphas = {len(pairs) * len(alphas)} networks, "
          f"{ds.x_test.shape[0]} test examples, {steps} training steps")  # fmt: skip

    def one_program():
        r = path_errors(model, params, state, ds, pairs, alphas,
                        networks_per_step=args.networks_per_step)  # fmt: skip
        return jax.block_until_ready(r.errors)

    @jax.jit
    def evaluate_one(pa, pb, sa, sb, alpha):
        p, s = interpolate(pa, pb, alpha), interpolate(sa, sb, alpha)
        m = evaluate(model.apply, p, s, ds.x_test, ds.y_test)
        return 1.0 - m["accuracy"], m["loss"]

    per_seed = [jax.tree.map(lambda x, i=i: x[i], (params, state)) for i in range(SEEDS)]
    alpha_values = [jax.numpy.float32(a) for a in alphas]

    def python_loop():
        out = np.empty((len(pairs), len(alphas)), np.float32)
        for p, (i, j) in enumerate(pairs):
            (pa, sa), (pb, sb) = per_seed[i], per_seed[j]
            for a, alpha in enumerate(alpha_values):
                out[p, a] = evaluate_one(pa, pb, sa, sb, alpha)[0]
        return out

    first = {}
    results = {}
    for name, fn in (("one program", one_program), ("python loop", python_loop)):
        start = time.perf_counter()
        results[name] = np.asarray(fn())
        first[name] = time.perf_counter() - start
    # Vmapped and single matmuls round differently, so a test example at a near tie can
    # flip: allow one example per network, and say how many networks differ at all.
    diff = np.abs(results["one program"] - results["python loop"])
    one_example = 1.0 / ds.x_test.shape[0]
    assert diff.max() <= one_example + 1e-6, f"errors differ by up to {diff.max()}"
    print(f"errors equal in {np.sum(diff == 0)} of {diff.size} networks, the rest within one "
          f"test example ({one_example})")  # fmt: skip
    stats = summary(np.asarray(barriers(results["one program"], alphas)))
    print(f"barriers mean {stats.mean:.4f} std {stats.std:.4f} min {stats.min:.4f} "
          f"max {stats.max:.4f}, stable {stats.stable}/{stats.count}")  # fmt: skip

    wall, cpu = time_interleaved({"one program": one_program, "python loop": python_loop}, reps)
    print("\n| variant | first call s (compile + run) | median s | median CPU s | "
          "loop ÷ program (wall) | loop ÷ program (CPU) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name in ("one program", "python loop"):
        rw = paired_ratio(wall["python loop"], wall[name])
        rc = paired_ratio(cpu["python loop"], cpu[name])
        print(f"| {name} | {first[name]:.3f} | {statistics.median(wall[name]):.4f} | "
              f"{statistics.median(cpu[name]):.4f} | {rw:.2f} | "
              f"{rc:.2f} |")  # fmt: skip
    print(load_line("end"))


if __name__ == "__main__":
    main()
