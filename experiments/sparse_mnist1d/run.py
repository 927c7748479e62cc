"""Sparse training on MNIST-1D: dense, IMP, GMP, SET, RigL, GraNet and static ERK / uniform
at 80, 90, 95 and 98 % sparsity, 3 seeds, for LeNet-300-100 and the MLP; and *To prune,
or not to prune*'s large-sparse (GMP) against small-dense networks with as many weights.

Every method trains for the same number of steps (3000, batch 60, Adam 1.2e-3: the
lottery workflow's setting); IMP trains that many steps per level (levels until 98 %).
Each run is an ordinary resumable run directory under ``--out`` (rerun: nothing finished
is recomputed); this script only gathers their records into the tables and figures next
to it:

* ``table_<model>.md``: final test accuracy (mean ± std [min, max] over seeds) per method
  and target sparsity (IMP: the level nearest the target, its own sparsity given);
* ``small_dense.md``: GMP at each sparsity against a dense MLP with as many kernel weights;
* ``accuracy_vs_sparsity_<model>.png``: every method's line with its seed band;
* ``results.csv``: every record (method, model, target, seed, accuracies, sparsity).

Usage::

    python experiments/sparse_mnist1d/run.py                  # ~25 min on 2 CPU cores
    python experiments/sparse_mnist1d/run.py --quick --out /tmp/sparse_quick
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import numpy as np

from jaxticket.lottery import LotteryConfig, run_lottery
from jaxticket.sparse_train import SparseTrainConfig, run_sparse_training
from jaxticket.sparse_train.plots import accuracy_vs_sparsity
from jaxticket.workflow.plots import save_figure
from jaxticket.workflow.summary import markdown_table

HERE = Path(__file__).parent
MODELS = ("lenet_300_100", "mlp")
SPARSITIES = (0.8, 0.9, 0.95, 0.98)
# name in the tables -> SparseTrainConfig fields (ERK starts for SET, RigL and static ERK).
# set: Mocanu et al.'s constant ζ; set_cosine: SET as Evci et al. ran it beside RigL (the
# same cosine-decayed ζ and schedule, so only the growth criterion differs).
METHODS = {
    "dense": dict(method="dense"),
    "gmp": dict(method="gmp"),
    "set": dict(method="set"),
    "set_cosine": dict(method="set", set_decay="cosine"),
    "rigl": dict(method="rigl"),
    "granet": dict(method="granet"),
    "static_erk": dict(method="static", allocation="erk"),
    "static_uniform": dict(method="static", allocation="uniform"),
}
KEY = "test_accuracy_final"  # early stopping would pick pre-pruning evaluations of GMP


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/sparse_mnist1d", help="folder of run directories")
    parser.add_argument("--quick", action="store_true", help="300 steps, 2 seeds, 2 sparsities")
    parser.add_argument("--write", default=str(HERE), help="where the tables and figures go")
    args = parser.parse_args(argv)
    steps, seeds = (300, 2) if args.quick else (3000, 3)
    sparsities = SPARSITIES[1::2] if args.quick else SPARSITIES
    every = 30 if args.quick else 100
    common = dict(dataset="mnist1d", steps=steps, seeds=seeds, eval_every=every)
    out = Path(args.write)
    out.mkdir(parents=True, exist_ok=True)

    rows: list[dict] = []
    for model in MODELS:
        records: list[dict] = []
        for name, fields in METHODS.items():
            extra = {} if name == "dense" else dict(sparsities=sparsities)
            if fields["method"] in ("gmp", "set", "rigl", "granet"):
                extra["every"] = every
            config = SparseTrainConfig(model=model, **common, **extra, **fields)
            _, recs = run_sparse_training(config, out_dir=args.out, log=print)
            records += [{**r, "method": name, "model": model} for r in recs]
        imp = _imp_records(model, sparsities, steps, seeds, every, args.out)
        records += imp
        rows += records
        fig = accuracy_vs_sparsity([r for r in records if r["method"] != "imp"] + imp, KEY)
        save_figure(fig, out / f"accuracy_vs_sparsity_{model}.png")
        (out / f"table_{model}.md").write_text(_table(records, sparsities) + "\n")
    rows += _small_dense(sparsities, common, every, args.out)
    (out / "small_dense.md").write_text(_small_dense_table(rows, sparsities) + "\n")
    _write_csv(rows, out / "results.csv")
    for model in MODELS:
        print(f"\n{model}\n" + (out / f"table_{model}.md").read_text())
    print("\n" + (out / "small_dense.md").read_text())


def _imp_records(model, sparsities, steps, seeds, every, out_dir) -> list[dict]:
    """IMP (20 % per level, output layer at half rate, rewind to init) for as many levels
    as reach the highest target; each target gets the level nearest it."""
    # Remaining after k levels is about 0.8^k: 98 % sparsity needs 18 levels.
    levels = math.ceil(math.log(1 - max(sparsities)) / math.log(0.8)) + 1
    config = LotteryConfig(
        model=model, steps=steps, seeds=seeds, levels=levels, controls=(), eval_every=every
    )
    _, records = run_lottery(config, out_dir=out_dir, log=print)
    by_level: dict[int, list[dict]] = {}
    for r in records:
        by_level.setdefault(r["level"], []).append(r)
    out = []
    for target in sparsities:
        level = min(by_level, key=lambda k: abs((1 - by_level[k][0]["remaining"]) - target))
        for r in by_level[level]:
            out.append(
                {
                    **r,
                    "method": "imp",
                    "model": model,
                    "sparsity": target,
                    "final_sparsity": 1 - r["remaining"],
                    "imp_level": level,
                }
            )
    return out


def _kernel_weights(widths: tuple[int, ...]) -> int:
    return sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))


def _small_widths(model: str, nonzero: int) -> tuple[int, ...]:
    """Hidden widths of a dense MLP (LeNet's 3:1 shape, or the MLP's equal widths) with
    about ``nonzero`` kernel weights (40 inputs, 10 outputs)."""
    ratio = 3 if model == "lenet_300_100" else 1
    best = None
    for a in range(1, 301):
        hidden = (a, max(1, round(a / ratio)))
        n = _kernel_weights((40, *hidden, 10))
        if best is None or abs(n - nonzero) < abs(best[1] - nonzero):
            best = (hidden, n)
    return best[0]


def _small_dense(sparsities, common, every, out_dir) -> list[dict]:
    rows = []
    for model, full in (("lenet_300_100", (300, 100)), ("mlp", (100, 100))):
        total = _kernel_weights((40, *full, 10))
        for target in sparsities:
            hidden = _small_widths(model, round((1 - target) * total))
            config = SparseTrainConfig(model="mlp", method="dense", hidden=hidden, **common)
            _, recs = run_sparse_training(config, out_dir=out_dir, log=print)
            for r in recs:
                rows.append(
                    {
                        **r,
                        "method": "small_dense",
                        "model": model,
                        "sparsity": target,
                        "hidden": "x".join(map(str, hidden)),
                        "nonzero": _kernel_weights((40, *hidden, 10)),
                    }
                )
    return rows


def _cell(records: list[dict]) -> str:
    if not records:
        return "–"
    acc = 100 * np.asarray([r[KEY] for r in records])
    flags = ""
    if any(r.get("collapsed") for r in records):
        flags += " (collapsed)"
    if any(r.get("diverged") for r in records):
        flags += " (DIVERGED)"
    return f"{acc.mean():.2f} ± {acc.std():.2f} [{acc.min():.1f}, {acc.max():.1f}]{flags}"


def _table(records: list[dict], sparsities) -> str:
    header = ["method", *[f"{100 * s:g} %" for s in sparsities]]
    body = []
    for name in [*METHODS, "imp"]:
        chosen = [r for r in records if r["method"] == name]
        if name == "dense":
            body.append([name, *[_cell(chosen)] * len(sparsities)])
            continue
        cells = []
        for s in sparsities:
            at = [r for r in chosen if r["sparsity"] == s]
            cell = _cell(at)
            if name == "imp" and at:
                cell += f" (level {at[0]['imp_level']}, {100 * at[0]['final_sparsity']:.1f} %)"
            cells.append(cell)
        body.append([name, *cells])
    return markdown_table(header, body)


def _small_dense_table(rows: list[dict], sparsities) -> str:
    header = ["model", "sparsity", "large-sparse (GMP)", "small-dense", "small-dense widths"]
    body = []
    for model in MODELS:
        for s in sparsities:
            gmp = [r for r in rows if (r["model"], r["method"], r["sparsity"]) == (model, "gmp", s)]
            small = [
                r
                for r in rows
                if (r["model"], r["method"], r["sparsity"]) == (model, "small_dense", s)
            ]
            widths = f"{small[0]['hidden']} ({small[0]['nonzero']} weights)" if small else "–"
            body.append([model, f"{100 * s:g} %", _cell(gmp), _cell(small), widths])
    return markdown_table(header, body)


def _write_csv(rows: list[dict], path: Path) -> None:
    fields = [
        "model",
        "method",
        "sparsity",
        "seed",
        "final_sparsity",
        "test_accuracy_final",
        "test_accuracy_early",
        "mask_updates",
        "collapsed",
        "diverged",
        "imp_level",
        "hidden",
    ]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k, "") for k in fields})


if __name__ == "__main__":
    main()
