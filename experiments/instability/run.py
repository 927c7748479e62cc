"""Instability analysis on MNIST-1D (Frankle et al. 2020, *Linear Mode Connectivity and the
Lottery Ticket Hypothesis*): error barriers between copies of a network trained from a
shared state θ_k that differ only in data order.

(a) dense zoo ``mlp`` and LeNet-300-100 from initialization (k = 0), two optimizers;
(b) the barrier against the step k the copies branch off at, k in {0, 25, 100, 250, 500},
    from snapshots of one dense run per parent (PNG);
(c) IMP tickets (iterative magnitude pruning, 4 rounds of 50 %: 93.75 % sparse) rewound to
    θ_0 vs θ_k (late rewinding): barrier and test accuracy against the dense network.

Each setting has P parents (own init) and 2 copies per parent (own data order); all copies
of a setting train in one vmapped ``train_seeds`` call, and every pair × 30 α is evaluated
in one ``path_errors`` program. Copies from θ_k train the remaining T − k steps
(``start_step=k``) with a fresh optimizer state.

    python experiments/instability/run.py              # results.md + PNGs next to this file
    python experiments/instability/run.py --steps 300 --parents 2 --out /tmp/inst  # quick
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import jaxticket  # noqa: E402
from jaxticket.pruning.pruner import magnitude_pruner  # noqa: E402
from jaxticket.stability import alpha_grid, barriers, path_errors, summary  # noqa: E402
from jaxticket.train import train_seeds  # noqa: E402

OPTIMIZERS = {
    "adam 1e-2": lambda: optax.adam(1e-2),
    "sgd 0.1 m0.9": lambda: optax.sgd(0.1, momentum=0.9),
    "sgd 0.5 m0.9": lambda: optax.sgd(0.5, momentum=0.9),
}
KS = (0, 25, 100, 250, 500)


def stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def seed(tree, j):
    return jax.tree.map(lambda x: x[j], tree)


def repeat(tree, times):
    """Every seed of a stacked tree repeated ``times`` times in place (p0 p0 p1 p1 ...)."""
    return jax.tree.map(lambda x: jnp.repeat(x, times, axis=0), tree)


def copies(model, data, opt, params, state, *, k, args, key, mask=None):
    """Trains 2 copies of each stacked parent state from step k to T; barriers per parent."""
    p = jax.tree.leaves(params)[0].shape[0]
    n = 2 * p
    data_keys = jax.random.split(key, n)
    out = train_seeds(
        model, data, opt, init_keys=data_keys, data_keys=data_keys,
        params=repeat(params, 2), model_state=repeat(state, 2),
        mask=None if mask is None else repeat(mask, 2), mask_per_seed=mask is not None,
        steps=args.steps - k, start_step=k, batch_size=args.batch_size,
    )  # fmt: skip
    pairs = np.stack([np.arange(0, n, 2), np.arange(1, n, 2)], axis=1)
    alphas = alpha_grid(args.alphas)
    res = path_errors(model, out.params, out.model_state, data, pairs, alphas)
    b = np.asarray(barriers(res.errors, res.alphas))
    acc = np.asarray(out.history["test_accuracy"])[:, -1]
    return {
        "barriers": b,
        "summary": summary(b)._asdict(),
        "accuracy": acc,
        "curve": np.asarray(res.errors),
        "diverged": int(np.asarray(out.diverged).sum()),
    }


def parents(model, data, opt, args, key, *, snapshots=(), mask=None, params=None, state=None):
    """P dense (or masked) parent runs of T steps with snapshots at ``snapshots``."""
    ik, dk = jax.random.split(key)
    init_keys = jax.random.split(ik, args.parents)
    kw = {}
    if params is not None:
        kw = {"params": params, "model_state": state}
    if mask is not None:
        kw.update(mask=mask, mask_per_seed=True)
    return train_seeds(
        model, data, opt, init_keys=init_keys, data_keys=jax.random.split(dk, args.parents),
        steps=args.steps, batch_size=args.batch_size,
        snapshot_steps=tuple(s for s in snapshots if 0 < s < args.steps), **kw,
    )  # fmt: skip


def inits(model, key, args):
    ik, _ = jax.random.split(key)
    return jax.vmap(model.init)(jax.random.split(ik, args.parents))


def sweep(model, data, opt_name, args, key):
    """Barrier against k: one dense parent run per parent, snapshots at KS."""
    opt = OPTIMIZERS[opt_name]()
    p0, s0 = inits(model, key, args)
    run = parents(model, data, opt, args, key, snapshots=KS, params=p0, state=s0)
    ks = [k for k in KS if k < args.steps]
    snaps = {0: (p0, s0), **dict(zip([k for k in ks if k > 0], run.snapshots, strict=True))}
    rows = {}
    for k in ks:
        pk, sk = snaps[k]
        rows[k] = copies(
            model, data, opt, pk, sk, k=k, args=args, key=jax.random.fold_in(key, 1000 + k)
        )
    parent_acc = np.asarray(run.history["test_accuracy"])[:, -1]
    return rows, run, parent_acc


def imp_masks(model, data, opt_name, args, key, rewind: int):
    """IMP: ``args.rounds`` rounds of training from θ_rewind ⊙ m and pruning 50 % of the
    surviving kernel weights by global magnitude; returns the masks (stacked over
    parents), θ_0 and θ_rewind of the parents' dense run, and the dense parent accuracy."""
    opt = OPTIMIZERS[opt_name]()
    p0, s0 = inits(model, key, args)
    dense = parents(model, data, opt, args, key, snapshots=KS, params=p0, state=s0)
    ks = [k for k in KS if 0 < k < args.steps]
    theta = {0: (p0, s0), **dict(zip(ks, dense.snapshots, strict=True))}
    pr, sr = theta[rewind]
    pruner = magnitude_pruner()
    final = dense.params
    masks = stack([jaxticket.masks.dense_mask(seed(p0, j)) for j in range(args.parents)])
    for r in range(args.rounds):
        masks = stack(
            [pruner(seed(final, j), seed(masks, j), fraction=0.5) for j in range(args.parents)]
        )
        if r == args.rounds - 1:
            break
        run = train_seeds(
            model, data, opt, init_keys=jax.random.split(key, args.parents),
            data_keys=jax.random.split(jax.random.fold_in(key, 77 + r), args.parents),
            params=jaxticket.masks.apply_mask(pr, masks), model_state=sr, mask=masks,
            mask_per_seed=True, steps=args.steps - rewind, start_step=rewind,
            batch_size=args.batch_size,
        )  # fmt: skip
        final = run.params
    dense_acc = np.asarray(dense.history["test_accuracy"])[:, -1]
    return masks, theta, dense_acc


def ticket_rows(model, data, opt_name, args, key):
    """Barrier and accuracy of IMP tickets rewound to 0 and to each late k."""
    opt = OPTIMIZERS[opt_name]()
    out = {}
    for rewind in (0, *[k for k in args.rewinds if 0 < k < args.steps]):
        masks, theta, dense_acc = imp_masks(model, data, opt_name, args, key, rewind)
        sparsity = float(np.mean(np.asarray(jaxticket.masks.sparsity(seed(masks, 0)))))
        pk, sk = theta[rewind]
        row = copies(
            model, data, opt, jaxticket.masks.apply_mask(pk, masks), sk, k=rewind, args=args,
            key=jax.random.fold_in(key, 5000 + rewind), mask=masks,
        )  # fmt: skip
        row.update(sparsity=sparsity, dense_accuracy=dense_acc)
        out[rewind] = row
    return out


def pm(x, scale=100.0):
    x = np.asarray(x, dtype=np.float64) * scale
    return f"{x.mean():.2f} ± {x.std():.2f} [{x.min():.2f}, {x.max():.2f}]"


def verdict(b):
    return "stable" if np.asarray(b).mean() < 0.02 else "unstable"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--parents", type=int, default=3)
    parser.add_argument("--alphas", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--rewinds", type=int, nargs="*", default=[100, 500])
    parser.add_argument("--parts", default="abc")
    parser.add_argument("--out", default=str(Path(__file__).parent))
    args = parser.parse_args()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = jaxticket.data.load("mnist1d")
    models = {
        name: jaxticket.models.get(name, input_shape=data.input_shape, num_classes=10)
        for name in ("mlp", "lenet_300_100")
    }
    key = jax.random.key(0)
    t_start = time.perf_counter()
    log = {"args": vars(args)}
    lines = []

    if "a" in args.parts:
        lines += ["## (a) Dense networks from initialization (k = 0)", ""]
        lines += ["| network | optimizer | test acc % (copies) | barrier % mean ± std [min, max] | "
                  "stable pairs | verdict |", "|---|---|---|---|---|---|"]  # fmt: skip
        log["a"] = {}
        for name, model in models.items():
            for opt_name in ("adam 1e-2", "sgd 0.1 m0.9"):
                p0, s0 = inits(model, jax.random.fold_in(key, 1), args)
                row = copies(
                    model, data, OPTIMIZERS[opt_name](), p0, s0, k=0, args=args,
                    key=jax.random.fold_in(key, 2),
                )  # fmt: skip
                s = row["summary"]
                lines.append(
                    f"| {name} | {opt_name} | {pm(row['accuracy'])} | {pm(row['barriers'])} | "
                    f"{s['stable']}/{s['count']} | {verdict(row['barriers'])} |"
                )
                log["a"][f"{name} / {opt_name}"] = row
                print(lines[-1], f"({time.perf_counter() - t_start:.0f} s)", flush=True)
        lines.append("")

    if "b" in args.parts:
        lines += ["## (b) Barrier against the branching step k (dense)", ""]
        head = "| network | optimizer | parent acc % | " + " | ".join(f"k={k}" for k in KS)
        lines += [head + " |", "|---|---|---|" + "---|" * len(KS)]
        log["b"] = {}
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, opt_name in (
            ("mlp", "adam 1e-2"), ("lenet_300_100", "adam 1e-2"), ("mlp", "sgd 0.5 m0.9"),
        ):  # fmt: skip
            rows, _, parent_acc = sweep(
                models[name], data, opt_name, args, jax.random.fold_in(key, 3)
            )
            ks = list(rows)
            mean = np.array([rows[k]["barriers"].mean() for k in ks]) * 100
            std = np.array([rows[k]["barriers"].std() for k in ks]) * 100
            ax.errorbar(np.array(ks) + 1, mean, yerr=std, marker="o", capsize=3,
                        label=f"{name}, {opt_name}")  # fmt: skip
            cells = [f"{100 * rows[k]['barriers'].mean():.2f} ± "
                     f"{100 * rows[k]['barriers'].std():.2f}" for k in ks]  # fmt: skip
            lines.append(f"| {name} | {opt_name} | {pm(parent_acc)} | " + " | ".join(cells) + " |")
            log["b"][f"{name} / {opt_name}"] = rows
            print(lines[-1], f"({time.perf_counter() - t_start:.0f} s)", flush=True)
        ax.axhline(2.0, color="gray", ls="--", label="2 % (stable below)")
        ax.set_xscale("log")
        ax.set_xlabel("k + 1 (step the copies branch off at)")
        ax.set_ylabel("test error barrier (%)")
        ax.set_title(f"Instability vs k, dense, MNIST-1D ({args.parents} parents x 2 copies)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / "barrier_vs_k.png", dpi=100)
        plt.close(fig)
        lines.append("")

    if "c" in args.parts:
        lines += ["## (c) IMP tickets rewound to 0 vs late rewinding", ""]
        lines += ["| network | optimizer | rewind k | sparsity % | dense acc % | ticket acc % | "
                  "barrier % | verdict | matching (acc ≥ dense − 1 pt) |",
                  "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        log["c"] = {}
        for name, opt_name in (("lenet_300_100", "adam 1e-2"), ("lenet_300_100", "sgd 0.1 m0.9")):
            rows = ticket_rows(models[name], data, opt_name, args, jax.random.fold_in(key, 4))
            for k, row in rows.items():
                match = row["accuracy"].mean() >= row["dense_accuracy"].mean() - 0.01
                lines.append(
                    f"| {name} | {opt_name} | {k} | {100 * row['sparsity']:.2f} | "
                    f"{pm(row['dense_accuracy'])} | {pm(row['accuracy'])} | "
                    f"{pm(row['barriers'])} | {verdict(row['barriers'])} | "
                    f"{'yes' if match else 'no'} |"
                )
                print(lines[-1], f"({time.perf_counter() - t_start:.0f} s)", flush=True)
            log["c"][f"{name} / {opt_name}"] = rows
        lines.append("")

    total = time.perf_counter() - t_start
    command = "python " + " ".join(sys.argv)
    text = [f"Command: `{command}` ({total:.0f} s)", "", *lines]
    (out_dir / "tables.md").write_text("\n".join(text) + "\n")
    (out_dir / "raw.json").write_text(json.dumps(log, default=_json, indent=1))
    print("\n".join(text))


def _json(x):
    if isinstance(x, np.ndarray | jax.Array):
        return np.asarray(x).round(5).tolist()
    if isinstance(x, np.generic):
        return x.item()
    return str(x)


if __name__ == "__main__":
    main()
