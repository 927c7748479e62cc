"""Pruning at initialization: SynFlow's 100 rounds against PyTorch eager, GraSP against a gradient.

Two measurements, each side by side in one process, repetitions interleaved (the order
rotates every round), medians after an untimed warm-up call whose time (compile + one run)
is reported separately:

- **SynFlow, 100 rounds, LeNet-300-100 (40-300-100-10, MNIST-1D shapes).**
  ``jaxticket``: ``jaxticket.at_init.SynFlow(rounds=100).mask(...)``, the whole iteration one
  compiled ``lax.fori_loop`` (sparsity traced, so every sparsity shares one compile).
  ``torch (k thr)``: the same 100 rounds written out in PyTorch eager: an ``nn.Sequential``
  40-300-100-10 with biases, holding the same initial weights (copied from the JAX init)
  replaced by ``|w|`` and ``|b|``; every round masks the weights, runs an all-ones input,
  backpropagates ``R = sum(output)``, scores ``w * grad`` and keeps a global top-k of the
  alive weights, at density ``(1 - s)^(k/100)`` after round k (k = 1..100; the last round
  exactly ``s``), counted as jaxticket counts (round half up, rates to six decimals);
  ``torch.set_num_threads(k)`` for each k in ``--threads``. The two masks are compared
  (per-layer kept counts and the overlap of the kept weights) before any time is printed.
- **GraSP's cost against one gradient**, on LeNet-300-100 and the 1-D CNN (``cnn1d``) with a
  batch of 256 MNIST-1D examples: (a) one jitted loss gradient, (b) the GraSP scores
  ``jaxticket.pruning.grasp`` (``H g`` by forward-over-reverse, so about two gradients more),
  (c) the whole ``jaxticket.at_init.GraSP().mask(...)`` (batch draw, scores, global top-k),
  for reference (d) ``jaxticket.at_init.SNIP().mask(...)``, and the two parts of (c) besides
  the scores: (e) the global top-k alone (``make_pruner(criteria.magnitude, "global")``) and
  (f) the batch draw alone (``at_init.draw_batch``); (g) SNIP's scores and top-k as one
  ``make_pruner(criteria.snip(loss), "global")`` call on the same batch, outside the
  one-round ``lax.fori_loop`` that ``SNIP().mask`` runs (``prune_in_rounds``); ratios to
  (a), paired per round.
  ``--quick`` times LeNet-300-100 only. Each timed sample is ``--inner`` calls,
  ``block_until_ready`` on the last.

torch is optional and imported only when present (``--no-torch`` skips it); without it the
script prints the JAX side alone. ``OMP_WAIT_POLICY`` defaults to ``PASSIVE`` (see
``bench_engine.py``).

Usage::

    python benchmarks/bench_at_init.py            # sparsities 0.9, 0.99; 7 rounds
    python benchmarks/bench_at_init.py --quick    # sparsity 0.9, 5 rounds, fewer inner calls
"""

from __future__ import annotations

import os

# Before anything loads an OpenMP runtime (torch reads it once, at import); see bench_engine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from bench_engine import (  # noqa: E402
    import_torch,
    layer_names,
    load_line,
    machine_header,
    paired_ratio,
    time_interleaved,
)

import jaxticket.data as data_lib  # noqa: E402
import jaxticket.models as models_lib  # noqa: E402
from jaxticket import at_init  # noqa: E402
from jaxticket.masks import dense_mask  # noqa: E402
from jaxticket.pruning import criteria, grasp, grasp_loss, make_pruner  # noqa: E402

ROUNDS = 100
BATCH = 256


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sparsities", default="0.9,0.99", help="comma-separated, in [0, 1)")
    parser.add_argument("--reps", type=int, default=7, help="timed rounds (>= 5)")
    parser.add_argument("--inner", type=int, default=20, help="GraSP: calls per timed sample")
    parser.add_argument(
        "--threads",
        default=f"1,{os.cpu_count()}",
        help="comma-separated torch.set_num_threads values, one torch variant each",
    )
    parser.add_argument("--models", default="lenet_300_100,cnn1d", help="GraSP: models")
    parser.add_argument("--no-torch", action="store_true", help="time jaxticket alone")
    parser.add_argument(
        "--quick", action="store_true", help="sparsity 0.9, 5 rounds, inner 5, LeNet only"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sparsities, args.reps, args.inner = args.sparsities.split(",")[0], 5, 5
        args.models = args.models.split(",")[0]
    sparsities = [float(s) for s in args.sparsities.split(",")]

    torch = None if args.no_torch else import_torch()
    print(machine_header(torch))
    data = data_lib.load("mnist1d")
    synflow_section(torch, sparsities, args)
    grasp_section(data, args)


# -- SynFlow ---------------------------------------------------------------------------


def synflow_section(torch, sparsities: list[float], args) -> None:
    """SynFlow's 100 rounds: jaxticket's one program against a PyTorch eager loop."""
    model = models_lib.get("lenet_300_100", input_shape=(40,), num_classes=10)
    params, state = model.init(jax.random.key(0))
    method = at_init.SynFlow(rounds=ROUNDS)
    key = jax.random.key(1)
    names = layer_names(params)
    kernels = [np.asarray(params[n]["kernel"]) for n in names]
    biases = [np.asarray(params[n]["bias"]) for n in names]
    threads = [int(t) for t in args.threads.split(",")] if torch is not None else []

    print(f"\n## SynFlow, {ROUNDS} rounds, LeNet-300-100 (40-300-100-10), global top-k\n")
    rows = []
    for s in sparsities:

        def jax_run(s=s):
            return jax.block_until_ready(method.mask(model, params, state, None, key, s))

        variants = {"jaxticket": jax_run}
        for k in threads:
            variants[f"torch ({k} thr)"] = torch_synflow_fn(torch, kernels, biases, s, k)
        first = {}
        results = {}
        for name, fn in variants.items():
            start = time.perf_counter()
            results[name] = fn()
            first[name] = time.perf_counter() - start
        jax_masks = [np.asarray(results["jaxticket"][n]["kernel"]) for n in names]
        for name in variants:
            if name != "jaxticket":
                label = f"s={s}: jaxticket vs {name}"
                print(mask_agreement(label, names, jax_masks, results[name]))
        print(load_line("start"))
        wall, cpu = time_interleaved(variants, args.reps)
        print(load_line("after"))
        for name in variants:
            rows.append(
                (
                    s,
                    name,
                    first[name],
                    statistics.median(wall[name]),
                    statistics.median(cpu[name]),
                    paired_ratio(wall[name], wall["jaxticket"]),
                    paired_ratio(cpu[name], cpu["jaxticket"]),
                )
            )
    print(
        "\n| sparsity | variant | first call s (compile + run) | median s | median CPU s "
        "| ÷ jaxticket (wall) | ÷ jaxticket (CPU) |\n|---|---|---|---|---|---|---|"
    )
    for s, name, first_s, w, c, rw, rc in rows:
        print(f"| {s} | {name} | {first_s:.3f} | {w:.4f} | {c:.4f} | {rw:.2f} | {rc:.2f} |")


def torch_synflow_fn(torch, kernels, biases, sparsity: float, threads: int):
    """A no-argument function running the 100 SynFlow rounds in PyTorch eager; it returns
    the kept-weight masks as numpy arrays in the JAX kernel layout ``(in, out)``."""
    sizes = [k.shape for k in kernels]
    layers = []
    for i, (n_in, n_out) in enumerate(sizes):
        layers.append(torch.nn.Linear(n_in, n_out))
        if i < len(sizes) - 1:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for lin, b in zip(linears, biases, strict=True):
            lin.bias.copy_(torch.from_numpy(np.abs(b)))
    abs_weights = [torch.from_numpy(np.abs(k).T.copy()) for k in kernels]  # (out, in)
    numels = [w.numel() for w in abs_weights]
    total = sum(numels)
    keeps = [kept_count(rate, total) for rate in density_schedule(sparsity, ROUNDS)]
    ones = torch.ones(1, sizes[0][0])

    def run():
        torch.set_num_threads(threads)
        masks = [torch.ones_like(w, dtype=torch.bool) for w in abs_weights]
        for keep in keeps:
            with torch.no_grad():
                for lin, w, m in zip(linears, abs_weights, masks, strict=True):
                    lin.weight.copy_(w * m)
            net.zero_grad(set_to_none=True)
            net(ones).sum().backward()
            with torch.no_grad():
                scores = torch.cat(
                    [
                        torch.where(m, lin.weight * lin.weight.grad, -torch.inf).flatten()
                        for lin, m in zip(linears, masks, strict=True)
                    ]
                )
                alive = int(sum(int(m.sum()) for m in masks))
                flat = torch.zeros(total, dtype=torch.bool)
                flat[torch.topk(scores, min(keep, alive), sorted=False).indices] = True
                masks = [f.view_as(w) for f, w in zip(flat.split(numels), abs_weights, strict=True)]
        return [m.numpy().T for m in masks]

    return run


def density_schedule(sparsity: float, rounds: int) -> list[float]:
    """Round k's sparsity ``1 - (1 - s)^(k/rounds)`` in float32, the last exactly ``s``."""
    density = np.float32(1.0) - np.float32(sparsity)
    rates = [np.float32(1.0) - density ** np.float32(k / rounds) for k in range(1, rounds)]
    return [float(r) for r in rates] + [sparsity]


def kept_count(rate: float, total: int) -> int:
    """Weights kept at ``rate``: ``total - round_half_up(rate * total)``, rate to 6 decimals
    (jaxticket's exact count, ``jaxticket.pruning.allocation``)."""
    micro = int(np.round(np.float32(rate) * np.float32(1e6)))
    return total - (micro * total + 500_000) // 1_000_000


def mask_agreement(label: str, names, jax_masks, torch_masks) -> str:
    """Per-layer kept counts of both masks and the share of jaxticket's kept weights that
    the other mask keeps too."""
    cells = []
    common = kept = 0
    for name, a, b in zip(names, jax_masks, torch_masks, strict=True):
        cells.append(f"{name} {int(a.sum())}/{int(b.sum())}")
        common += int((a & b).sum())
        kept += int(a.sum())
    same = all(np.array_equal(a, b) for a, b in zip(jax_masks, torch_masks, strict=True))
    return (
        f"{label}: kept per layer (jax/torch) {', '.join(cells)}; overlap of kept "
        f"{common / kept:.4f}; identical masks: {same}"
    )


# -- GraSP against one gradient ----------------------------------------------------------


def grasp_section(data, args) -> None:
    """(a) a gradient, (b) GraSP scores, (c) GraSP's mask, (d) SNIP's mask, per model."""
    print(f"\n## GraSP against one gradient, batch {BATCH} of MNIST-1D, sparsity 0.9\n")
    rows = []
    base = "(a) loss gradient"
    for name in args.models.split(","):
        model = models_lib.get(name, input_shape=data.input_shape, num_classes=data.num_classes)
        variants = grasp_variants(model, data, args.inner)
        first = {}
        for label, fn in variants.items():
            start = time.perf_counter()
            fn()
            first[label] = time.perf_counter() - start
        print(load_line(f"start, {name}"))
        wall, cpu = time_interleaved(variants, args.reps)
        print(load_line(f"after, {name}"))
        for label in variants:
            rows.append(
                (
                    name,
                    label,
                    first[label],
                    1e3 * statistics.median(wall[label]) / args.inner,
                    1e3 * statistics.median(cpu[label]) / args.inner,
                    paired_ratio(wall[label], wall[base]),
                    paired_ratio(cpu[label], cpu[base]),
                )
            )
    print(
        f"\n| model | computation | first {args.inner} calls s (compile + run) | median ms "
        "| median CPU ms | ÷ (a) wall | ÷ (a) CPU |\n|---|---|---|---|---|---|---|"
    )
    for name, label, first_s, w, c, rw, rc in rows:
        print(f"| {name} | {label} | {first_s:.3f} | {w:.3f} | {c:.3f} | {rw:.2f} | {rc:.2f} |")


def grasp_variants(model, data, inner: int) -> dict:
    """No-argument functions making ``inner`` calls each of (a)-(d) on one model."""
    params, state = model.init(jax.random.key(0))
    batch = at_init.draw_batch(data, jax.random.key(2), BATCH)
    dropout, key = jax.random.key(3), jax.random.key(4)

    def apply_fn(p, x):
        return model.apply(p, state, x, train=True, key=dropout)[0]

    def loss(p, b):
        return optax.softmax_cross_entropy_with_integer_labels(apply_fn(p, b[0]), b[1]).mean()

    grad_fn = jax.jit(jax.grad(loss))
    criterion = grasp(grasp_loss(apply_fn, 200.0))
    scores_fn = jax.jit(lambda p, b: criterion(p, batch=b))
    magnitude = make_pruner(criteria.magnitude, "global")
    topk_fn = jax.jit(lambda p: magnitude(p, dense_mask(p), sparsity=0.9))
    snip_pruner = make_pruner(criteria.snip(loss), "global")
    snip_fn = jax.jit(lambda p, b: snip_pruner(p, dense_mask(p), sparsity=0.9, batch=b))
    draw_fn = jax.jit(lambda k: at_init.draw_batch(data, k, BATCH))
    grasp_method, snip_method = at_init.GraSP(batch_size=BATCH), at_init.SNIP(batch_size=BATCH)

    def repeat(call):
        def run():
            for _ in range(inner):
                out = call()
            return jax.block_until_ready(out)

        return run

    return {
        "(a) loss gradient": repeat(lambda: grad_fn(params, batch)),
        "(b) GraSP scores (Hg)": repeat(lambda: scores_fn(params, batch)),
        "(c) GraSP().mask": repeat(lambda: grasp_method.mask(model, params, state, data, key, 0.9)),
        "(d) SNIP().mask": repeat(lambda: snip_method.mask(model, params, state, data, key, 0.9)),
        "(e) global top-k alone": repeat(lambda: topk_fn(params)),
        "(f) batch draw alone": repeat(lambda: draw_fn(key)),
        "(g) SNIP pruner, no rounds loop": repeat(lambda: snip_fn(params, batch)),
    }


if __name__ == "__main__":
    main()
