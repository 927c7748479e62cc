"""Figures of a COLT run: final test accuracy of COLT's and IMP's tickets against their
sparsity and against the iterations spent finding their masks, seed bands (the dense
network, cycle 0, starts both lines)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from jaxticket.workflow.plots import metric_figure, save_figure

__all__ = ["accuracy_vs_iterations", "accuracy_vs_sparsity", "save_plots"]


def _tickets(records: list[dict]) -> list[dict]:
    if not records:
        raise ValueError("COLT plots: no records")
    out = []
    for r in records:
        kinds = {"dense": ("COLT", "IMP"), "colt": ("COLT",), "imp": ("IMP",)}.get(r["kind"], ())
        out += [{**r, "method": k, "sparsity": 1.0 - r["remaining"]} for k in kinds]
    return out


def accuracy_vs_sparsity(records: list[dict]) -> Figure:
    """Final test accuracy (%) against the sparsity (%) of COLT's and IMP's tickets."""
    return metric_figure(
        _tickets(records),
        "sparsity",
        "test_accuracy_final",
        ("method",),
        x_scale=100.0,
        xlabel="sparsity of the prunable weights %",
        ylabel="final test accuracy %",
    )


def accuracy_vs_iterations(records: list[dict]) -> Figure:
    """Final test accuracy (%) against the iterations spent finding the mask (all copies
    counted)."""
    return metric_figure(
        _tickets(records),
        "find_iterations",
        "test_accuracy_final",
        ("method",),
        xlabel="iterations to find the mask (all copies)",
        ylabel="final test accuracy %",
    )


def save_plots(records: list[dict], run_dir) -> tuple[Path, Path]:
    """Writes ``accuracy_vs_sparsity.png`` and ``accuracy_vs_iterations.png`` into
    ``run_dir``; returns their paths."""
    run_dir = Path(run_dir)
    a = save_figure(accuracy_vs_sparsity(records), run_dir / "accuracy_vs_sparsity.png")
    b = save_figure(accuracy_vs_iterations(records), run_dir / "accuracy_vs_iterations.png")
    return a, b
