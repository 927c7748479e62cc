"""Mask overlap across the methods of a finished comparison at one sparsity, split by
seed: pairs of the same seed (same init and data order in every method) against pairs of
different seeds, each next to the random baseline of its pair, and a method × method table
of same-seed Jaccard (diagonal: the random level of the method's own counts).

Usage: python experiments/mask_overlap/by_seed.py COMPARE_DIR [--sparsity 0.9]
(reads only).
"""

from __future__ import annotations

import argparse
import itertools

import jax
import numpy as np

from jaxticket.stability.overlap import overlap_matrix, random_baseline
from jaxticket.stability.overlap_runs import masks_from_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("compare_dir")
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--draws", type=int, default=100)
    args = parser.parse_args()
    found = masks_from_run(args.compare_dir, sparsity=args.sparsity)
    ticket = overlap_matrix(found.masks)
    base = random_baseline(jax.random.key(0), found.masks, draws=args.draws)
    method = [label.rsplit(" seed ", 1)[0] for label in found.labels]
    seed = [int(label.rsplit(" ", 1)[1]) for label in found.labels]
    n = len(method)
    kinds = {
        "same seed, different method": lambda i, j: seed[i] == seed[j] and method[i] != method[j],
        "different seed, same method": lambda i, j: seed[i] != seed[j] and method[i] == method[j],
        "different seed, different method": lambda i, j: (
            seed[i] != seed[j] and method[i] != method[j]
        ),
    }
    for name, pick in kinds.items():
        pairs = [(i, j) for i, j in itertools.combinations(range(n), 2) if pick(i, j)]
        obs = np.mean([ticket["jaccard"][p] for p in pairs])
        ref = np.mean([base["jaccard"][p] for p in pairs])
        print(f"- {name}: {len(pairs)} pairs, Jaccard {obs:.4f} vs random {ref:.4f}")
    names = sorted(set(method), key=method.index)
    print("\nsame-seed Jaccard between methods (mean over seeds); diagonal: (random level)\n")
    print("| | " + " | ".join(names) + " |")
    print("|" + "---|" * (len(names) + 1))
    for a in names:
        cells = []
        for b in names:
            pairs = [
                (i, j)
                for i in range(n)
                for j in range(n)
                if method[i] == a and method[j] == b and seed[i] == seed[j]
            ]
            source = base if a == b else ticket
            value = np.mean([source["jaccard"][p] for p in pairs])
            cells.append(f"({value:.3f})" if a == b else f"{value:.3f}")
        print(f"| {a} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
