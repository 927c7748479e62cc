"""Steps per second of the jaxticket engine against a Python loop and PyTorch eager.

One training run of ``--steps`` Adam steps (batch 60) is timed four ways, in one process,
repetitions interleaved (the order rotates each round) so that load on a shared machine
falls on all of them alike; medians of ``--reps`` repetitions after a warm-up (compile):

- ``engine train()``: the public front door ``jaxticket.train.train`` (a seed-vmapped,
  jitted ``lax.scan`` over the whole run; compiled once and cached).
- ``engine make_train_fn``: ``jax.jit(make_train_fn(...))`` without the seed axis.
- ``python loop``: a Python ``for`` loop over a jitted step (donated buffers) with the same
  model, optimizer, loss and batch sampling (the same keyed per-epoch order,
  ``jaxticket.train.order``, so its final weights match the engine's; the script prints the
  difference).
- ``torch eager (k thr)``: the same MLP (weights copied from the JAX init) with
  ``torch.optim.Adam``, ``torch.randperm`` batches and ``torch.set_num_threads(k)`` for each
  k in ``--threads`` (default 1 and the core count; XLA uses every core). Skipped, with a
  note, when torch is not installed. ``OMP_WAIT_POLICY`` defaults to ``PASSIVE``: with
  torch's default spin-waiting OpenMP threads a step took 20x longer on this shared,
  oversubscribed 2-core machine (set ``OMP_WAIT_POLICY=ACTIVE`` to measure that instead).

Every variant evaluates the test split before and after training, as the engine does.
Workloads: LeNet-300-100 on 784-d synthetic inputs (10,000 train / 1,000 test) and the
MNIST-1D reference MLP (40-100-100-10) on MNIST-1D.

FLOP rate: a training step counts 6·B·Σ(in·out) FLOPs (forward 2·B·Σ, backward twice
that); it is compared with a 2048×2048 float32 matmul timed in the same rounds. To explain
the gap the script also times, at the step's own shapes, the step's matmuls alone (forward,
weight gradient and input gradient of every layer, in a ``fori_loop``) and the Adam update
alone (a ``lax.scan`` of ``optax.adam`` updates with fixed gradients).

Usage::

    python benchmarks/bench_engine.py            # full run (a few minutes on 2 cores)
    python benchmarks/bench_engine.py --quick    # short run
"""

from __future__ import annotations

import os

# Before anything loads an OpenMP runtime (torch reads it once, at import).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import functools  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import jaxticket.data as data_lib  # noqa: E402
import jaxticket.models as models_lib  # noqa: E402
from jaxticket.train import cross_entropy, evaluate, make_train_fn, order, train  # noqa: E402

BATCH = 60
LEARNING_RATE = 1.2e-3
MATMUL_N = 2048
PARTS = ("step GEMMs only", "fwd+bwd only", "adam only")  # timed per iteration


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=1000, help="steps per timed run")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions (>= 5)")
    parser.add_argument("--batch", type=int, default=BATCH, help="minibatch size")
    parser.add_argument(
        "--threads",
        default=f"1,{os.cpu_count()}",
        help="comma-separated torch.set_num_threads values, one torch column each",
    )
    parser.add_argument(
        "--workloads",
        default="lenet784,mnist1d_mlp",
        help="comma-separated subset of: lenet784, mnist1d_mlp",
    )
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch column")
    parser.add_argument("--quick", action="store_true", help="short run: 300 steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps = min(args.steps, 300)

    torch = None if args.no_torch else import_torch()
    args.threads = [int(t) for t in args.threads.split(",")]
    print(machine_header(torch))
    print(f"steps/run {args.steps}, batch {args.batch}, reps {args.reps} (interleaved)\n")
    for name in args.workloads.split(","):
        model, data = WORKLOADS[name]()
        run_workload(name, model, data, args, torch)
    print(load_line("end"))


# -- workloads ---------------------------------------------------------------------------


def lenet784():
    """LeNet-300-100 on synthetic 784-d inputs (10,000 train / 1,000 test)."""
    kx, ky, kt, ku = jax.random.split(jax.random.key(123), 4)
    data = data_lib.Dataset(
        x_train=jax.random.normal(kx, (10_000, 784)),
        y_train=jax.random.randint(ky, (10_000,), 0, 10),
        x_test=jax.random.normal(kt, (1_000, 784)),
        y_test=jax.random.randint(ku, (1_000,), 0, 10),
        name="synthetic784",
        num_classes=10,
        input_shape=(784,),
    )
    model = models_lib.get("lenet_300_100", input_shape=(784,), num_classes=10)
    return model, data


def mnist1d_mlp():
    """The MNIST-1D reference MLP (40-100-100-10) on MNIST-1D."""
    data = data_lib.load("mnist1d")
    model = models_lib.get("mlp", input_shape=data.input_shape, num_classes=data.num_classes)
    return model, data


WORKLOADS = {"lenet784": lenet784, "mnist1d_mlp": mnist1d_mlp}


def run_workload(name, model, data, args, torch) -> None:
    steps, batch = args.steps, args.batch
    params, model_state = model.init(jax.random.key(0))
    sizes = layer_sizes(params)
    data_key = jax.random.key(1)
    opt = optax.adam(LEARNING_RATE)

    engine = jax.jit(make_train_fn(model, opt, steps=steps, batch_size=batch))
    dropout_key = jax.random.fold_in(data_key, 0x5EED)

    def run_engine():
        return jax.block_until_ready(
            engine(params, model_state, None, data_key, dropout_key, data).params
        )

    def run_train():
        result = train(
            model, data, opt, key=data_key, steps=steps, batch_size=batch,
            params=params, model_state=model_state,
        )  # fmt: skip
        return jax.block_until_ready(result.params)

    loop = make_python_loop(model, opt, data, steps=steps, batch_size=batch)
    run_loop = lambda: loop(params, model_state, data_key, dropout_key)

    matmul = make_matmul(MATMUL_N)
    gemm_iters = max(steps // 4, 50)
    gemms = make_step_gemms(sizes, batch, gemm_iters)
    fwd_bwd = make_fwd_bwd(model, params, model_state, data, batch, gemm_iters)
    adam_only = make_adam_only(opt, params, gemm_iters)

    variants: dict[str, Callable[[], object]] = {
        "engine train()": run_train,
        "engine make_train_fn": run_engine,
        "python loop": run_loop,
    }
    if torch is not None:
        for k in args.threads:
            variants[f"torch eager ({k} thr)"] = make_torch_run(
                torch, params, data, steps=steps, batch=batch, threads=k
            )
    variants["matmul 2048"] = matmul
    variants["step GEMMs only"] = gemms
    variants["fwd+bwd only"] = fwd_bwd
    variants["adam only"] = adam_only

    # Warm-up: compiles everything and checks that the loop trains what the engine trains.
    final_engine = run_engine()
    final_loop = run_loop()
    diff = max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(jax.tree.leaves(final_engine), jax.tree.leaves(final_loop), strict=True)
    )
    for fn in variants.values():
        fn()

    print(f"## {name}: {model.name}, layers {sizes}, train set {data.x_train.shape[0]}")
    print(load_line("start"))
    times, cpu = time_interleaved(variants, args.reps)
    print(load_line("after"))

    med = statistics.median
    step_flops = 6 * batch * sum(i * o for i, o in sizes)
    needed_flops = step_flops - 2 * batch * sizes[0][0] * sizes[0][1]  # layer 1: no input grad
    matmul_flops = 2 * MATMUL_N**3
    matmul_wall, matmul_cpu = med(times["matmul 2048"]), med(cpu["matmul 2048"])
    print(
        f"FLOPs/step 6·B·Σ(in·out) = {step_flops / 1e6:.2f} M; needed {needed_flops / 1e6:.2f} M "
        f"(x{needed_flops / step_flops:.2f}: layer 1 needs no input gradient)\n"
        f"matmul {MATMUL_N}³: {matmul_flops / matmul_wall / 1e9:.1f} GFLOP/s wall, "
        f"{matmul_flops / matmul_cpu / 1e9:.1f} GFLOP per CPU-second"
    )
    print(f"python loop vs engine, final weights max |Δ| = {diff:.2e}\n")
    print(
        "| variant | wall s/run | CPU s/run | steps/s | engine speedup (paired wall) "
        "| engine speedup (paired CPU) | GFLOP/s (6·B·Σ) | × matmul (wall) | × matmul (CPU s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    ref = "engine make_train_fn"
    for v in variants:
        if v == "matmul 2048":
            continue
        scale = steps / gemm_iters if v in PARTS else 1.0  # parts run gemm_iters iterations
        wall, cpu_s = med(times[v]) * scale, med(cpu[v]) * scale
        if v in PARTS:
            speedups = "– | –"
            mark = "¹"
        else:
            speedups = f"{paired_ratio(times[v], times[ref]):.2f} | "
            speedups += f"{paired_ratio(cpu[v], cpu[ref]):.2f}"
            mark = ""
        if v == "adam only":
            rates = "– | – | –"
        else:
            work = step_flops * steps
            rates = (
                f"{work / wall / 1e9:.1f} | {work / wall / (matmul_flops / matmul_wall):.2f} "
                f"| {work / cpu_s / (matmul_flops / matmul_cpu):.2f}"
            )
        print(
            f"| {v} | {wall:.3f}{mark} | {cpu_s:.3f}{mark} | {steps / wall:,.0f} | {speedups} "
            f"| {rates} |"
        )
    print(
        f"\n¹ timed over {gemm_iters} iterations, scaled to {steps}. Engine speedup: median over "
        "rounds of (variant time / engine time) in the same round. × matmul: the variant's "
        "FLOP rate (6·B·Σ per step) over the 2048³ matmul's, by wall time and by CPU time; "
        f"multiply by {needed_flops / step_flops:.2f} to count only the FLOPs a step needs.\n"
    )


# -- the variants --------------------------------------------------------------------------


def make_python_loop(model, opt, data, *, steps: int, batch_size: int):
    """A Python loop over a jitted step with the engine's sampling, loss and optimizer."""
    n_train = data.x_train.shape[0]
    per_epoch = n_train // batch_size

    @jax.jit
    def epoch_keys(data_key, epoch):
        return order.epoch_keys(data_key, epoch[None])[0]

    @functools.partial(jax.jit, donate_argnums=(0, 1, 2, 3))
    def step(params, model_state, opt_state, loss_sum, keys, offset, t, dropout_key, x_all, y_all):
        idx = order.permute(keys, offset + jnp.arange(batch_size), n_train)
        x, y = x_all[idx], y_all[idx]

        def loss_fn(p):
            logits, new_ms = model.apply(
                p, model_state, x, train=True, key=jax.random.fold_in(dropout_key, t)
            )
            return cross_entropy(logits, y), new_ms

        (loss, new_ms), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_ms, opt_state, loss_sum + loss

    @jax.jit
    def test_metrics(params, model_state):
        return evaluate(model.apply, params, model_state, data.x_test, data.y_test)

    def run(params, model_state, data_key, dropout_key):
        params = jax.tree.map(jnp.copy, params)  # the step donates its inputs
        model_state = jax.tree.map(jnp.copy, model_state)
        opt_state = opt.init(params)
        loss_sum = jnp.zeros(())
        first = test_metrics(params, model_state)
        keys = None
        for t in range(steps):
            epoch, within = divmod(t, per_epoch)
            if within == 0:
                keys = epoch_keys(data_key, jnp.asarray(epoch))
            params, model_state, opt_state, loss_sum = step(
                params, model_state, opt_state, loss_sum, keys, within * batch_size, t,
                dropout_key, data.x_train, data.y_train,
            )  # fmt: skip
        last = test_metrics(params, model_state)
        return jax.block_until_ready((params, first, last, loss_sum))[0]

    return run


def make_torch_run(torch, params, data, *, steps: int, batch: int, threads: int):
    """PyTorch eager training of the same MLP from the same initial weights."""
    nn = torch.nn
    sizes = layer_sizes(params)
    init = [
        (np.asarray(params[k]["kernel"]).T.copy(), np.asarray(params[k]["bias"]).copy())
        for k in layer_names(params)
    ]
    n = data.x_train.shape[0]
    per_epoch = n // batch
    x_train = torch.from_numpy(np.asarray(data.x_train).reshape(n, -1).copy())
    y_train = torch.from_numpy(np.asarray(data.y_train).astype(np.int64))
    x_test = torch.from_numpy(np.asarray(data.x_test).reshape(data.x_test.shape[0], -1).copy())
    y_test = torch.from_numpy(np.asarray(data.y_test).astype(np.int64))

    def build():
        layers = []
        for i, (n_in, n_out) in enumerate(sizes):
            layers.append(nn.Linear(n_in, n_out))
            if i < len(sizes) - 1:
                layers.append(nn.ReLU())
        net = nn.Sequential(*layers)
        linears = [m for m in net if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for lin, (w, b) in zip(linears, init, strict=True):
                lin.weight.copy_(torch.from_numpy(w))
                lin.bias.copy_(torch.from_numpy(b))
        return net

    def test_metrics(net):
        with torch.no_grad():
            logits = net(x_test)
            loss = nn.functional.cross_entropy(logits, y_test)
            return loss.item(), (logits.argmax(-1) == y_test).float().mean().item()

    def run():
        torch.set_num_threads(threads)
        net = build()
        opt = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
        gen = torch.Generator().manual_seed(0)
        loss_sum = torch.zeros(())
        test_metrics(net)
        perm = None
        for t in range(steps):
            within = t % per_epoch
            if within == 0:
                perm = torch.randperm(n, generator=gen)
            idx = perm[within * batch : (within + 1) * batch]
            loss = nn.functional.cross_entropy(net(x_train[idx]), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach()
        return test_metrics(net)

    return run


def make_matmul(n: int):
    """A jitted float32 ``n×n @ n×n`` matmul; the reference FLOP rate."""
    ka, kb = jax.random.split(jax.random.key(7))
    a = jax.random.normal(ka, (n, n), jnp.float32)
    b = jax.random.normal(kb, (n, n), jnp.float32)
    f = jax.jit(jnp.matmul)
    return lambda: jax.block_until_ready(f(a, b))


def make_step_gemms(sizes, batch: int, iters: int):
    """The step's matmuls alone at its shapes: forward and weight gradient of every layer,
    input gradient of every layer but the first (the step needs none there).

    Operands alternate between two random copies by iteration parity, so XLA cannot hoist
    them out of the loop; products accumulate so none is dead code.
    """
    keys = iter(jax.random.split(jax.random.key(3), 3 * len(sizes)))
    xs = [jax.random.normal(next(keys), (2, batch, i)) for i, _ in sizes]
    dys = [jax.random.normal(next(keys), (2, batch, o)) for _, o in sizes]
    ws = [jax.random.normal(next(keys), (i, o)) * 0.01 for i, o in sizes]

    @jax.jit
    def run(xs, dys, ws):
        def body(i, accs):
            out = []
            for layer, ((fwd, wgrad, igrad), x2, dy2, w) in enumerate(
                zip(accs, xs, dys, ws, strict=True)
            ):
                x, dy = x2[i % 2], dy2[i % 2]
                igrad = igrad if layer == 0 else igrad + dy @ w.T
                out.append((fwd + x @ w, wgrad + x.T @ dy, igrad))
            return out

        init = [(jnp.zeros((batch, o)), jnp.zeros((i, o)), jnp.zeros((batch, i))) for i, o in sizes]
        return jax.lax.fori_loop(0, iters, body, init)

    return lambda: jax.block_until_ready(run(xs, dys, ws))


def make_fwd_bwd(model, params, model_state, data, batch: int, iters: int):
    """Loss and gradients alone (no optimizer, no sampling): the step's compute share.

    Two fixed batches alternate by iteration parity; gradients accumulate so none is dead.
    """
    xs = data.x_train[: 2 * batch].reshape(2, batch, *data.input_shape)
    ys = data.y_train[: 2 * batch].reshape(2, batch)

    def loss_fn(p, x, y):
        return cross_entropy(model.apply(p, model_state, x, train=True, key=None)[0], y)

    @jax.jit
    def run(params):
        def body(acc, i):
            g = jax.grad(loss_fn)(params, xs[i % 2], ys[i % 2])
            return jax.tree.map(jnp.add, acc, g), None

        zeros = jax.tree.map(jnp.zeros_like, params)
        return jax.lax.scan(body, zeros, jnp.arange(iters))[0]

    return lambda: jax.block_until_ready(run(params))


def make_adam_only(opt, params, iters: int):
    """``iters`` Adam updates with fixed gradients: the optimizer's share of a step."""
    grads = jax.tree.map(lambda p: jnp.full_like(p, 1e-3), params)

    @jax.jit
    def run(params):
        def body(carry, _):
            p, s = carry
            updates, s = opt.update(grads, s, p)
            return (optax.apply_updates(p, updates), s), None

        return jax.lax.scan(body, (params, opt.init(params)), None, length=iters)[0][0]

    return lambda: jax.block_until_ready(run(params))


# -- shared helpers (bench_seeds.py and bench_imp_torch.py import these) --------------------


def import_torch(threads: int | None = None):
    """torch (with ``threads`` intra-op threads if given), or ``None`` and a note if it is
    not installed."""
    try:
        import torch
    except ImportError:
        print("torch is not installed: the PyTorch column is skipped")
        print("(install the pinned CPU build: pip install torch==2.13.0)\n")
        return None
    if threads:
        torch.set_num_threads(threads)
    return torch


def machine_header(torch=None) -> str:
    """Versions, cores, devices and load, for the head of a benchmark's output."""
    torch_part = (
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
        if torch is not None
        else "torch: not installed"
    )
    return (
        f"{platform.platform()}, python {platform.python_version()}, "
        f"{os.cpu_count()} cores, device {jax.devices()[0].device_kind}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}\n"
        f"jax {jax.__version__}, optax {optax.__version__}, {torch_part}\n" + load_line("start")
    )


def load_line(when: str) -> str:
    """The load average (1/5/15 min) with a warning when it exceeds the core count."""
    one, five, fifteen = os.getloadavg()
    cores = os.cpu_count() or 1
    warn = (
        f"  ** load above {cores} cores: other processes share the CPU; prefer a rerun **"
        if one > cores
        else ""
    )
    return f"load average ({when}): {one:.2f} / {five:.2f} / {fifteen:.2f}{warn}"


def time_interleaved(
    fns: dict[str, Callable[[], object]], reps: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and process-CPU seconds of ``reps`` calls of each function, the order rotating
    every round. CPU seconds (all threads of this process) are less sensitive than wall
    time to other processes on a shared machine."""
    names = list(fns)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for r in range(reps):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            start, start_cpu = time.perf_counter(), time.process_time()
            fns[n]()
            wall[n].append(time.perf_counter() - start)
            cpu[n].append(time.process_time() - start_cpu)
    return wall, cpu


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of ``a[r] / b[r]``: robust to load that drifts between rounds."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def layer_names(params) -> list[str]:
    """``dense1, dense2, ..., output`` in forward order."""
    hidden = sorted((k for k in params if k.startswith("dense")), key=lambda k: int(k[5:]))
    return [*hidden, "output"]


def layer_sizes(params) -> list[tuple[int, int]]:
    """``(in, out)`` of each dense layer in forward order."""
    return [tuple(int(d) for d in params[k]["kernel"].shape) for k in layer_names(params)]


if __name__ == "__main__":
    main()
