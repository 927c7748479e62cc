"""Do IMP ticket masks of different seeds overlap more than random masks with the same
per-layer counts? For every level of a finished lottery run: the mean pairwise Jaccard of
the seeds' ticket masks against ``random_baseline`` (random masks with each ticket's
per-layer counts), globally and per layer, as a markdown table.

Usage: python experiments/mask_overlap/imp_seeds.py LOTTERY_RUN_DIR [--draws 200]
(reads only; the run directory is not written).
"""

from __future__ import annotations

import argparse

import jax

from jaxticket.stability.overlap import overlap_matrix, pairs_mean, random_baseline
from jaxticket.stability.overlap_runs import masks_from_run
from jaxticket.workflow.store import RunStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    levels = [lvl for lvl in RunStore(args.run_dir).finished_levels() if lvl > 0]
    rows = []
    for level in levels:
        found = masks_from_run(args.run_dir, level=level)
        key = jax.random.fold_in(jax.random.key(args.seed), level)
        ticket = overlap_matrix(found.masks)
        base = random_baseline(key, found.masks, draws=args.draws)
        cells = [f"L{level}", f"{sum(found.sparsities) / len(found.sparsities):.3f}"]
        for path in [None, *ticket["layers"]]:
            t = ticket if path is None else ticket["layers"][path]
            b = base if path is None else base["layers"][path]
            obs, ref, std = (pairs_mean(x) for x in (t["jaccard"], b["jaccard"], b["jaccard_std"]))
            z = (obs - ref) / std if std > 0 else float("nan")
            cells.append(f"{obs:.4f} / {ref:.4f} ({z:+.1f}σ)")
        rows.append(cells)
    layers = list(ticket["layers"])
    print(
        f"{len(found.labels)} seeds; cells: ticket Jaccard (mean over seed pairs) / random "
        f"baseline ({args.draws} draws) (excess in σ of one random pair)\n"
    )
    head = ["level", "sparsity", "all layers", *layers]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for cells in rows:
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
