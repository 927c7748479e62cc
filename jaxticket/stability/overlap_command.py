"""The ``jaxticket overlap RUN_DIR...`` command: mask overlap of finished runs' masks.

Reads one level of every run directory given (a compare directory: of each run under
``runs/``), prints the N × N global Jaccard and normalized-Hamming matrices, a per-layer
summary against the random baseline (random masks with each mask's per-layer counts), and
writes a heatmap PNG. ``jaxticket.cli`` builds the subparser with :func:`add_arguments`
and calls :func:`run_command` with the parsed arguments.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``RUN_DIR...``, ``--level`` or ``--sparsity``, ``--out``, ``--draws``, ``--seed``."""
    parser.add_argument(
        "run_dirs",
        nargs="+",
        metavar="RUN_DIR",
        help="run directories of lottery, sparse-train, at-init, scratch or compare runs",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--level", type=_level, default=None, help="the level (phase) to read in every run"
    )
    which.add_argument(
        "--sparsity",
        type=_fraction,
        default=None,
        help="read in every run the level at this sparsity (default, with no --level: "
        "each run's last finished level)",
    )
    parser.add_argument(
        "--tolerance",
        type=_fraction,
        default=0.01,
        help="how far a level's sparsity may be from --sparsity (default: 0.01)",
    )
    parser.add_argument(
        "--out", default="overlap.png", help="heatmap PNG to write (default: overlap.png)"
    )
    parser.add_argument(
        "--draws",
        type=_positive_int,
        default=100,
        help="random-baseline draws (default: 100)",
    )
    parser.add_argument("--seed", type=_level, default=0, help="random-baseline seed (default 0)")


def run_command(args: argparse.Namespace) -> int:
    """Loads the masks, prints the matrices, the per-layer summary and the baseline,
    writes the heatmap; returns the exit code (0)."""
    import jax

    from jaxticket.stability.overlap import overlap_matrix, random_baseline
    from jaxticket.stability.overlap_runs import masks_from_runs

    found = masks_from_runs(
        args.run_dirs, level=args.level, sparsity=args.sparsity, tolerance=args.tolerance
    )
    overlap = overlap_matrix(found.masks)
    base = random_baseline(jax.random.key(args.seed), found.masks, draws=args.draws)
    print(format_report(found, overlap, base))
    path = save_heatmap(found.labels, overlap, args.out)
    print(f"\nheatmap: {path}")
    return 0


def format_report(found, overlap: dict, base: dict) -> str:
    """The masks, both global matrices, the per-layer summary and the baseline as text."""
    n = len(found.labels)
    lines = [f"{n} masks:"]
    lines += [
        f"  [{i}] {label}  (sparsity {s:.4f})"
        for i, (label, s) in enumerate(zip(found.labels, found.sparsities, strict=True))
    ]
    lines += ["", "global Jaccard |a ∧ b| / |a ∨ b|:", format_matrix(overlap["jaccard"])]
    lines += ["", "global normalized Hamming |a xor b| / n:", format_matrix(overlap["hamming"])]
    lines += ["", *format_layers(overlap, base)]
    return "\n".join(lines)


def format_matrix(matrix) -> str:
    """An N × N matrix with row and column indices, three decimals."""
    m = np.asarray(matrix)
    head = "      " + "".join(f"{j:>7}" for j in range(m.shape[1]))
    rows = [f"{i:>5} " + "".join(f"{v:7.3f}" for v in row) for i, row in enumerate(m)]
    return "\n".join([head, *rows])


def format_layers(overlap: dict, base: dict) -> list[str]:
    """Per layer and for all layers: mean over pairs i != j of Jaccard and Hamming, next to
    the random baseline's (mean ± std over draws)."""
    from jaxticket.stability.overlap import pairs_mean

    rows = [("layer", "weights", "Jaccard", "random Jaccard", "Hamming", "random Hamming")]
    items = [*overlap["layers"].items(), ("all layers", overlap)]
    for path, entry in items:
        ref = base if path == "all layers" else base["layers"][path]
        rows.append(
            (
                path,
                str(entry["total"]),
                f"{pairs_mean(entry['jaccard']):.4f}",
                f"{pairs_mean(ref['jaccard']):.4f} ± {pairs_mean(ref['jaccard_std']):.4f}",
                f"{pairs_mean(entry['hamming']):.4f}",
                f"{pairs_mean(ref['hamming']):.4f} ± {pairs_mean(ref['hamming_std']):.4f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    text = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    n = overlap["jaccard"].shape[0]
    note = (
        f"mean over the {n * (n - 1) // 2} pairs of different masks; random: masks with each "
        f"mask's per-layer counts, {base['draws']} draws (± the std of one draw)"
    )
    if n < 2:
        note = "one mask: no pairs (NaN)"
    return [note, text[0], "-" * len(text[0]), *text[1:]]


def save_heatmap(labels: list[str], overlap: dict, path) -> Path:
    """Jaccard and Hamming matrices side by side, labelled by mask, to ``path`` (PNG)."""
    from jaxticket.workflow.plots import new_figure, save_figure

    n = len(labels)
    size = min(4 + 0.35 * n, 30)
    fig, ax = new_figure(size=(2 * size + 2, size))
    fig.delaxes(ax)
    for k, (name, cmap) in enumerate((("jaccard", "viridis"), ("hamming", "magma"))):
        ax = fig.add_subplot(1, 2, k + 1)
        matrix = np.asarray(overlap[name])
        image = ax.imshow(matrix, cmap=cmap, vmin=0.0, vmax=1.0)
        if n <= 12:  # small matrices: the values in the cells
            for (i, j), v in np.ndenumerate(matrix):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="grey")
        ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(n), labels, fontsize=7)
        ax.set_title("Jaccard" if name == "jaccard" else "normalized Hamming")
        fig.colorbar(image, ax=ax, fraction=0.046)
    return save_figure(fig, path)


def _level(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an int >= 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    value = _level(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value
