"""Weight matching on MNIST-1D: error barrier between independently trained MLPs, before
and after aligning their hidden units by permutation (Ainsworth et al., Git Re-Basin).

For each width, 2·P seeds with different inits and data orders are trained in one vmapped
run (Adam); seed 2k+1 is aligned to seed 2k by weight matching, and the test error along
the straight path between the pair is evaluated at 30 α, before and after alignment. The
barrier is max_α err(α) − (err(0) + err(1)) / 2 (Frankle et al. 2020).

    python experiments/weight_matching/run.py                  # results.md next to this file
    python experiments/weight_matching/run.py --steps 200 --pairs 1 --out /tmp/wm.md   # quick
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np
import optax

import jaxticket.models as zoo
from jaxticket.data import load_mnist1d
from jaxticket.stability.interpolate import alpha_grid, barriers, path_errors
from jaxticket.stability.matching import weight_matching
from jaxticket.stability.permutations import apply_permutation, permutation_spec
from jaxticket.train import train_seeds

WIDTHS = {"mlp (100, 100)": (100, 100), "mlp (512, 512)": (512, 512)}


def run_width(label, hidden, data, args):
    model = zoo.get("mlp", input_shape=data.x_train.shape[1:], num_classes=10, hidden=hidden)
    n = 2 * args.pairs
    init_keys = jax.random.split(jax.random.key(args.seed), n)
    data_keys = jax.random.split(jax.random.key(args.seed + 1), n)
    t0 = time.perf_counter()
    out = train_seeds(
        model, data, optax.adam(args.lr), init_keys=init_keys, data_keys=data_keys,
        steps=args.steps, batch_size=args.batch_size,
    )  # fmt: skip
    train_s = time.perf_counter() - t0
    params = jax.tree.map(np.asarray, out.params)
    state = jax.tree.map(np.asarray, out.model_state)
    seed = lambda j: jax.tree.map(lambda x: x[j], params)  # noqa: E731
    spec = permutation_spec(seed(0))
    aligned = [seed(j) for j in range(n)]
    t0 = time.perf_counter()
    l2 = []
    for k in range(args.pairs):
        a, b = seed(2 * k), seed(2 * k + 1)
        perms = weight_matching(spec, a, b, key=jax.random.key(k))
        aligned[2 * k + 1] = apply_permutation(spec, perms, b)[0]
        l2.append((_l2(a, b), _l2(a, aligned[2 * k + 1])))
    match_s = time.perf_counter() - t0
    aligned = jax.tree.map(lambda *xs: np.stack(xs), *aligned)
    pairs = np.array([[2 * k, 2 * k + 1] for k in range(args.pairs)])
    alphas = alpha_grid(30)
    before = path_errors(model, params, state, data, pairs, alphas)
    after = path_errors(model, aligned, state, data, pairs, alphas)
    same = np.allclose(np.asarray(before.errors)[:, -1], np.asarray(after.errors)[:, -1])
    return {
        "label": label,
        "before": np.asarray(barriers(before.errors, alphas)),
        "after": np.asarray(barriers(after.errors, alphas)),
        "loss_before": _loss_barrier(before.losses),
        "loss_after": _loss_barrier(after.losses),
        "ends": np.asarray(before.errors)[:, [0, -1]],
        "curve_before": np.asarray(before.errors).mean(0),
        "curve_after": np.asarray(after.errors).mean(0),
        "l2": np.array(l2),
        "same_endpoint": bool(same),
        "train_s": train_s,
        "match_s": match_s,
    }


def _l2(a, b):
    return float(
        np.sqrt(
            sum(
                np.sum((x - y) ** 2)
                for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
            )
        )
    )


def _loss_barrier(losses):
    losses = np.asarray(losses)
    return losses.max(1) - 0.5 * (losses[:, 0] + losses[:, -1])


def _pm(x, pct=True):
    s = 100.0 if pct else 1.0
    return f"{s * x.mean():.2f} ± {s * x.std():.2f} (min {s * x.min():.2f}, max {s * x.max():.2f})"


def report(rows, args, command, total_s):
    lines = [
        "# Weight matching on MNIST-1D: barriers before and after alignment",
        "",
        f"Command: `{command}` ({total_s:.0f} s on the shared 2-core CPU machine).",
        "",
        f"Setup: the zoo `mlp` (ReLU, PyTorch-default init) at two widths, {2 * args.pairs} "
        f"seeds per width (different init and data order), Adam lr {args.lr}, {args.steps} "
        f"steps, batch {args.batch_size}; pairs (0,1), (2,3), ... ; seed 2k+1 aligned to seed "
        "2k by `weight_matching` (coordinate descent over layers, linear assignment per "
        "layer); test error (1000 examples) along the straight path at 30 α "
        "(`jaxticket.stability.interpolate.path_errors`). Barrier = max_α err − mean of the "
        "end errors; mean ± std over pairs (ddof 0), in percentage points.",
        "",
        "| network | end errors % | error barrier before % | error barrier after % | "
        "loss barrier before | loss barrier after | L2 dist before → after | train s | match s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ends = f"{100 * r['ends'].mean():.1f} ± {100 * r['ends'].std():.1f}"
        l2 = f"{r['l2'][:, 0].mean():.1f} → {r['l2'][:, 1].mean():.1f}"
        lines.append(
            f"| {r['label']} | {ends} | {_pm(r['before'])} | {_pm(r['after'])} | "
            f"{_pm(r['loss_before'], False)} | {_pm(r['loss_after'], False)} | {l2} | "
            f"{r['train_s']:.0f} | {r['match_s']:.1f} |"
        )
    lines += ["", "Per pair (error barrier before → after, %):", ""]
    for r in rows:
        per = ", ".join(
            f"{100 * b:.2f} → {100 * a:.2f}" for b, a in zip(r["before"], r["after"], strict=True)
        )
        lines.append(f"- {r['label']}: {per}")
    lines += ["", "Mean test error (%) along the path, α = 0, 1/29, ..., 1:", ""]
    for r in rows:
        for tag in ("before", "after"):
            curve = " ".join(f"{100 * e:.1f}" for e in r[f"curve_{tag}"])
            lines.append(f"- {r['label']} {tag}: {curve}")
    lines += ["", "## Reading", ""]
    for r in rows:
        b, a = r["before"].mean(), r["after"].mean()
        lines.append(
            f"- {r['label']}: error barrier {100 * b:.1f} → {100 * a:.1f} points "
            f"({100 * a / b:.0f} % of it remains); loss barrier {r['loss_before'].mean():.2f} → "
            f"{r['loss_after'].mean():.2f}; pairs stable (< 2 %) before "
            f"{int((r['before'] < 0.02).sum())}/{len(r['before'])}, after "
            f"{int((r['after'] < 0.02).sum())}/{len(r['after'])}."
        )
    wide = rows[-1]
    large_before = all((r["before"] >= 0.02).all() for r in rows)
    near_none = bool((wide["after"] < 0.02).all())
    narrower = rows[0]["after"].mean() > wide["after"].mean()
    lines += [
        "",
        "Paper's claim (Ainsworth et al.: independently trained wide MLPs have a large barrier "
        "before alignment and nearly none after): large barrier before — "
        f"{'holds' if large_before else 'does not hold'} for every pair; nearly none after — "
        + (
            "holds for the widest network."
            if near_none
            else "only in part: alignment removes most of the barrier"
            + (", and less remains for the wider network," if narrower else ",")
            + " but at these widths it stays above the 2 % stability threshold."
        ),
    ]
    checks = all(r["same_endpoint"] for r in rows)
    lines += [
        "",
        "The aligned network's own test error equals the unaligned one's at α = 1 for every "
        f"pair: {checks} (the permutation keeps the function).",
        "",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results.md"))
    args = parser.parse_args()
    t0 = time.perf_counter()
    data = load_mnist1d()
    rows = []
    for label, hidden in WIDTHS.items():
        rows.append(run_width(label, hidden, data, args))
        r = rows[-1]
        print(f"{label}: before {_pm(r['before'])}  after {_pm(r['after'])}", flush=True)
    cmd = "python experiments/weight_matching/run.py"
    defaults = {"--steps": 2000, "--pairs": 3, "--lr": 1e-3, "--batch-size": 128, "--seed": 0}
    given = {"--steps": args.steps, "--pairs": args.pairs, "--lr": args.lr,
             "--batch-size": args.batch_size, "--seed": args.seed}  # fmt: skip
    cmd += "".join(f" {k} {v}" for k, v in given.items() if v != defaults[k])
    args.out.write_text(report(rows, args, cmd, time.perf_counter() - t0))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
