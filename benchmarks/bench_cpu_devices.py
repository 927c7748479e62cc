"""Seeds spread over CPU devices: ``train_seeds(..., mesh=seed_mesh())`` with the CPU split
into 1 device and into one device per core, side by side.

The device count is fixed when JAX starts, so each count is timed in a fresh process
(``jax_num_cpu_devices``), alternating. The workload is one IMP level of the README job:
LeNet-300-100 on MNIST-1D, batch 60, Adam 1.2e-3, eval every 100 steps, ``--steps`` steps,
N seeds (9 = 3 seeds x ticket + 2 controls; an N that does not divide the device count is
padded by repeating the last seed).

Usage::

    python benchmarks/bench_cpu_devices.py            # N = 1, 2, 9; 1000 steps
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,9", help="comma-separated seed counts N")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3, help="rounds of (1 device, all cores)")
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    counts = [int(n) for n in args.seeds.split(",")]
    if args.child:
        return child(args.child, counts, args.steps)

    cores = os.cpu_count() or 1
    print(f"{cores} cores, {args.steps} steps per run, load {os.getloadavg()[0]:.2f}")
    per = {d: {n: [] for n in counts} for d in (1, cores)}
    for _ in range(args.reps):
        for d in (1, cores):
            cmd = [sys.executable, __file__, f"--child={d}", f"--seeds={args.seeds}"]
            out = subprocess.run(
                [*cmd, f"--steps={args.steps}"], check=True, capture_output=True, text=True
            ).stdout
            for n, s in json.loads(out.splitlines()[-1]).items():
                per[d][int(n)].append(s)
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    print(f"\n| N seeds | 1 device, ms/step/seed | {cores} devices, ms/step/seed | speedup |")
    print("|---|---|---|---|")
    for n in counts:
        one, many = med(per[1][n]), med(per[cores][n])
        print(f"| {n} | {one * 1e3:.3f} | {many * 1e3:.3f} | {one / many:.2f} |")
    print(f"load {os.getloadavg()[0]:.2f}")


def child(devices: int, counts: list[int], steps: int) -> None:
    import jax

    jax.config.update("jax_num_cpu_devices", devices)
    print(json.dumps({n: seconds_per_step_and_seed(n, devices, steps) for n in counts}))


def seconds_per_step_and_seed(n: int, devices: int, steps: int) -> float:
    import jax
    import numpy as np

    from jaxticket.lottery.config import LotteryConfig
    from jaxticket.lottery.imp import Experiment
    from jaxticket.masks import dense_mask
    from jaxticket.train import seed_mesh, train_seeds

    config = LotteryConfig(model="lenet_300_100", dataset="mnist1d", seeds=n, steps=steps)
    exp = Experiment(config)
    params, state = exp.init_batch(exp.init_keys)
    mask = jax.tree.map(lambda m: np.stack([m] * n), dense_mask(exp.template))
    used = jax.devices()[: min(n, devices)]
    mesh = seed_mesh(used) if len(used) > 1 else None

    def run():
        out = train_seeds(
            exp.model,
            exp.data,
            exp._optimizer(),
            init_keys=exp.init_keys,
            data_keys=exp.data_keys,
            steps=steps,
            batch_size=60,
            eval_every=100,
            params=params,
            model_state=state,
            mask=mask,
            mask_per_seed=True,
            mesh=mesh,
        )
        jax.block_until_ready(out)

    run()  # compile
    times = []
    for _ in range(3):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return sorted(times)[1] / steps / n


if __name__ == "__main__":
    main()
