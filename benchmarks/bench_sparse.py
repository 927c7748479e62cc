"""Cost of mask updates inside the compiled run: RigL, GMP and SET against a fixed mask.

LeNet-300-100 (40-300-100-10) on MNIST-1D, Adam 1.2e-3, batch 60, evaluation every
``--eval-every`` steps, ``--steps`` steps. Every variant starts from the same 90 %-sparse
random ERK mask (GMP from the dense mask, as it prunes from dense) and is timed in one
process, the rounds interleaved (the order rotates each round), medians of ``--reps``
rounds after a warm-up call that compiles:

- ``fixed mask``: the mask never changes (``jaxticket.sparse.Static``: no ``mask_update``);
- ``RigL /100``: ``RigL(0.9, every=100)``, updates every 100 steps until 75 % of the run,
  each with the dense gradient on a fresh minibatch;
- ``GMP /100``: ``GMP(0.9)``, Zhu–Gupta's cubic schedule from dense at ``--gmp-start`` to
  90 % at ``--gmp-end`` (fractions of the run), an update every 100 steps;
- ``SET /100``: ``SET(0.9, every=100)`` (drop by magnitude, regrow at random);
- ``RigL /10``: RigL with an update every 10 steps: ten times the updates, the same steps;
- two probes that take the cost apart: ``cuts /100`` (an identity update every 100 steps:
  the segment table cut at the update steps, the branch, ``regrow`` and the sparsity
  record, no gradient, no top-k) and ``cuts+grad /100`` (the same, with
  ``needs_grad=True``: adds the dense gradient).

Each variant runs for one seed (``jaxticket.train.train``) and for 3 seeds vmapped
(``jaxticket.train.train_seeds``). The table gives wall ms/step, the paired ratios (median
over rounds of variant time / fixed-mask time in the same round) by wall and by CPU time
(``time.process_time``, all threads), and the extra cost per update,
``(t_variant − t_fixed) / n_updates``: equal for ``RigL /100`` and ``RigL /10`` when the
cost grows with the number of updates and not with the number of steps.

The dense gradient is shown to be computed only at update steps by counting loss
evaluations (a host callback in the loss function) in separate, untimed runs: a fixed-mask
run evaluates the loss ``steps + evaluations × chunks`` times; a RigL run exactly
``n_updates`` more.

Usage::

    python benchmarks/bench_sparse.py            # full run (~10 min on 2 cores)
    python benchmarks/bench_sparse.py --quick    # short run
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import jax
import jax.numpy as jnp
import optax
from bench_engine import load_line, machine_header, paired_ratio, time_interleaved

import jaxticket.data as data_lib
import jaxticket.models as models_lib
import jaxticket.pruning.topk as topk_lib
import jaxticket.sparse as sparse
from jaxticket.optim import get_mask, zero_pruned
from jaxticket.pruning import topk_mask
from jaxticket.train import MaskUpdate, cross_entropy, train, train_seeds
from jaxticket.train.engine import make_engine
from jaxticket.train.mask_update import UpdateInputs, make_update_branch

BATCH = 60
LEARNING_RATE = 1.2e-3
SPARSITY = 0.9
REF = "fixed mask"
VARIANTS = (REF, "RigL /100", "GMP /100", "SET /100", "RigL /10", "cuts /100", "cuts+grad /100")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=3000, help="steps per run")
    parser.add_argument("--eval-every", type=int, default=500, help="steps between evaluations")
    parser.add_argument("--reps", type=int, default=5, help="timed rounds (>= 5)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the vmapped runs")
    parser.add_argument("--gmp-start", type=float, default=0.1, help="GMP t0 / steps")
    parser.add_argument("--gmp-end", type=float, default=0.75, help="GMP last update / steps")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma-separated subset of: " + ", ".join(VARIANTS) + " (fixed mask always runs)",
    )
    parser.add_argument(
        "--topk-search",
        action="store_true",
        help="probe: route every top-k through the float counting search instead of the "
        "small-input path (radix selection; sets jaxticket.pruning.topk._SORT_BELOW = 0 in "
        "this process)",
    )
    parser.add_argument("--no-count", action="store_true", help="skip the loss-evaluation count")
    parser.add_argument("--quick", action="store_true", help="short run: 600 steps, 3 reps")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.eval_every, args.reps = min(args.steps, 600), 200, 3
    args.variants = [REF, *(v for v in args.variants.split(",") if v and v != REF)]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {unknown[0]!r}; expected some of {', '.join(VARIANTS)}")
    if args.topk_search:
        topk_lib._SORT_BELOW = 0

    print(machine_header())
    print(
        f"steps/run {args.steps}, batch {BATCH}, eval every {args.eval_every}, "
        f"reps {args.reps} (interleaved), 1 seed and {args.seeds} seeds vmapped\n"
    )
    data = data_lib.load("mnist1d")
    model = models_lib.get(
        "lenet_300_100", input_shape=data.input_shape, num_classes=data.num_classes
    )
    print(
        f"top-k path: {'counting search (probe)' if args.topk_search else 'library default'}"
        f" (radix selection up to {topk_lib._SORT_BELOW} entries)\n"
    )
    configs = make_configs(model, args)
    profile_updates(model, data, configs)
    if not args.no_count:
        show_dense_gradient_count(model, data, configs, args)
    time_variants(model, data, {k: configs[k] for k in args.variants}, args)
    print(load_line("end"))


# -- the variants ---------------------------------------------------------------------------


def keep_mask(inputs):
    """The identity update (a module-level function: the compile cache keys it by value)."""
    return inputs.mask


def make_configs(model, args) -> dict[str, dict]:
    """name -> ``{"mask", "mask_update", "n_updates"}`` for every variant."""
    steps, every = args.steps, 100
    params, _ = model.init(jax.random.key(0))
    erk = sparse.random_mask(params, jax.random.key(1), SPARSITY, "erk")
    round_to = lambda f: max(every, int(round(f * steps / every)) * every)  # noqa: E731
    gmp = sparse.GMP(
        final_sparsity=SPARSITY,
        start=round_to(args.gmp_start),
        end=min(round_to(args.gmp_end), steps - every),
        every=every,
    )
    rigl_steps = sparse.RigL(SPARSITY, every=every).mask_update(steps).steps
    updates = {
        REF: None,
        "RigL /100": sparse.RigL(SPARSITY, every=every).mask_update(steps),
        "GMP /100": gmp.mask_update(steps),
        "SET /100": sparse.SET(SPARSITY, every=every, allocation="erk").mask_update(steps),
        "RigL /10": sparse.RigL(SPARSITY, every=10).mask_update(steps),
        "cuts /100": MaskUpdate(keep_mask, rigl_steps),
        "cuts+grad /100": MaskUpdate(keep_mask, rigl_steps, needs_grad=True),
    }
    configs = {}
    for name, update in updates.items():
        mask = gmp.initial_mask(params) if name.startswith("GMP") else erk
        n = 0 if update is None else len(update.steps)
        configs[name] = {"mask": mask, "mask_update": update, "n_updates": n}
    print(f"GMP: {gmp}")
    print(f"RigL /100 updates at {rigl_steps[0]}..{rigl_steps[-1]} ({len(rigl_steps)})\n")
    return configs


def runner(model, data, opt, config, args, n_seeds: int, loss_fn=None):
    """A no-argument function training one variant (one seed, or ``n_seeds`` vmapped)."""
    common = dict(
        steps=args.steps,
        batch_size=BATCH,
        eval_every=args.eval_every,
        mask=config["mask"],
        mask_update=config["mask_update"],
        loss_fn=loss_fn,
    )
    if n_seeds == 1:
        return lambda: jax.block_until_ready(
            train(model, data, opt, key=jax.random.key(100), **common).params
        )
    keys = jnp.stack([jax.random.key(100 + i) for i in range(n_seeds)])
    data_keys = jnp.stack([jax.random.key(200 + i) for i in range(n_seeds)])
    return lambda: jax.block_until_ready(
        train_seeds(model, data, opt, init_keys=keys, data_keys=data_keys, **common).params
    )


# -- where an update's time goes -----------------------------------------------------------------


def time_call(fn, *args, n: int = 30) -> tuple[float, float]:
    """Median wall and CPU milliseconds of ``fn(*args)`` (after one compiling call)."""
    jax.block_until_ready(fn(*args))
    wall, cpu = [], []
    for _ in range(n):
        start, start_cpu = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(*args))
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return 1e3 * statistics.median(wall), 1e3 * statistics.median(cpu)


def profile_updates(model, data, configs) -> None:
    """Times one update alone, jitted at the run's starting state: the engine's whole update
    branch, the method's ``fn`` alone, and ``topk_mask`` on each leaf (the method's core)."""
    opt = optax.adam(LEARNING_RATE)
    params, model_state = model.init(jax.random.key(0))
    print("## One update alone (jitted, median of 30 calls after a compile)")
    print(load_line("start"))
    print("\n| update | whole branch ms (wall / CPU) | fn alone ms (wall / CPU) |")
    print("|---|---|---|")
    for name in ("RigL /100", "GMP /100", "SET /100", "cuts /100", "cuts+grad /100"):
        config = configs[name]
        update = config["mask_update"]
        engine = make_engine(
            model, opt, steps=update.steps[-1] + 1, batch_size=BATCH,
            mask_update=update,
        )  # fmt: skip
        state = engine.start(params, model_state, config["mask"], data).state
        branch = make_update_branch(
            model=model,
            loss_fn=cross_entropy,
            optimizer=zero_pruned(opt, config["mask"]),
            mask_update=update,
            batch_size=BATCH,
        )
        step = update.steps[len(update.steps) // 2]
        whole = jax.jit(lambda s, d, b=branch, t=step: b(s, t, 1, jax.random.key(5), d))
        w_wall, w_cpu = time_call(whole, state, data)
        inputs = update_inputs(model, state, step, data, update.needs_grad)
        f_wall, f_cpu = time_call(jax.jit(update.fn), inputs)
        print(f"| {name} | {w_wall:.2f} / {w_cpu:.2f} | {f_wall:.2f} / {f_cpu:.2f} |")
    print("\n| `topk_mask` on one leaf (90 % ERK alive, keep half) | ms (wall / CPU) |")
    print("|---|---|")
    erk = configs[REF]["mask"]
    for path in ("dense1", "dense2", "output"):
        w, m = params[path]["kernel"], erk[path]["kernel"]
        k = jnp.sum(m, dtype=jnp.int32) // 2
        tk = jax.jit(lambda s, a, k: topk_mask([s], [a], k))
        t_wall, t_cpu = time_call(tk, jnp.abs(w), m, k)
        print(f"| {path}/kernel {tuple(w.shape)} ({w.size} entries) | {t_wall:.2f} / {t_cpu:.2f} |")
    print()


def update_inputs(model, state, step, data, needs_grad):
    """``UpdateInputs`` like the branch builds them (gradient on the first minibatch)."""
    grad = None
    if needs_grad:
        x, y = data.x_train[:BATCH], data.y_train[:BATCH]
        objective = lambda p: cross_entropy(  # noqa: E731
            model.apply(p, state.model_state, x, train=True, key=None)[0], y
        )
        grad = jax.grad(objective)(state.params)
    return UpdateInputs(
        jnp.int32(step), jnp.int32(1), state.params, state.model_state, state.opt_state,
        get_mask(state.opt_state), jax.random.key(3), grad,
    )  # fmt: skip


# -- "show it": loss evaluations counted --------------------------------------------------------


def counting_loss(counter: list, logits, labels):
    """Cross-entropy that appends to ``counter`` (a host callback) each time it runs."""
    jax.debug.callback(lambda: counter.append(1))
    return cross_entropy(logits, labels)


def show_dense_gradient_count(model, data, configs, args) -> None:
    """Counts loss evaluations of untimed runs: a RigL run adds exactly one per update."""
    opt = optax.adam(LEARNING_RATE)
    n_evals = len(range(0, args.steps + 1, args.eval_every)) + (args.steps % args.eval_every > 0)
    chunks = -(-data.x_test.shape[0] // 1024)
    print("## Dense gradient: loss evaluations counted by a host callback (untimed runs)")
    print(
        f"expected without updates: {args.steps} steps + {n_evals} evaluations × {chunks} "
        f"test chunk(s) = {args.steps + n_evals * chunks}\n"
    )
    print(
        "| variant | mask updates | loss evaluations | − fixed mask | dense gradients = updates |"
    )
    print("|---|---|---|---|---|")
    base = None
    for name in (REF, "RigL /100", "RigL /10", "SET /100", "GMP /100"):
        counter: list = []
        loss = functools.partial(counting_loss, counter)
        runner(model, data, opt, configs[name], args, 1, loss_fn=loss)()
        jax.effects_barrier()
        count = len(counter)
        base = count if base is None else base
        n = configs[name]["n_updates"]
        grads = n if name.startswith("RigL") else 0
        ok = "yes" if count - base == grads else "**no**"
        print(f"| {name} | {n} | {count} | {count - base} | {ok} ({grads} expected) |")
    print()


# -- timing -------------------------------------------------------------------------------------


def time_variants(model, data, configs, args) -> None:
    opt = optax.adam(LEARNING_RATE)
    fns, compile_s = {}, {}
    for n_seeds in sorted({1, args.seeds}):
        for name, config in configs.items():
            label = f"{name} | {n_seeds}"
            fns[label] = runner(model, data, opt, config, args, n_seeds)
            start = time.perf_counter()
            fns[label]()  # warm-up: compiles
            compile_s[label] = time.perf_counter() - start
    print(f"## Timing: LeNet-300-100 on MNIST-1D, {SPARSITY:.0%} ERK start")
    print(load_line("start"))
    times, cpu = time_interleaved(fns, args.reps)
    print(load_line("after"))
    print(
        "\n| variant | seeds | updates | wall ms/step | × fixed (paired wall) "
        "| × fixed (paired CPU) | extra ms/update (wall) | extra ms/update (CPU) "
        "| first call s (compile) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    med = statistics.median
    for n_seeds in sorted({1, args.seeds}):
        ref = f"{REF} | {n_seeds}"
        for name, config in configs.items():
            label = f"{name} | {n_seeds}"
            n = config["n_updates"]
            wall, cpu_s = med(times[label]), med(cpu[label])
            extra = "– | –"
            if n:
                extra = (
                    f"{1e3 * (wall - med(times[ref])) / n:.2f} | "
                    f"{1e3 * (cpu_s - med(cpu[ref])) / n:.2f}"
                )
            print(
                f"| {name} | {n_seeds} | {n} | {1e3 * wall / args.steps:.3f} "
                f"| {paired_ratio(times[label], times[ref]):.3f} "
                f"| {paired_ratio(cpu[label], cpu[ref]):.3f} | {extra} "
                f"| {compile_s[label]:.1f} |"
            )
    print(
        "\nms/step: wall time of the whole run (evaluations included) / steps. Extra "
        "ms/update: (median variant time − median fixed-mask time) / number of updates.\n"
    )


if __name__ == "__main__":
    main()
