"""Figures of a sparse-model-soup run: final test accuracy against sparsity of the soup,
its members' mean, the best member (by validation accuracy) and plain IMP, seed bands."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from jaxticket.soups.report import level_rows
from jaxticket.workflow.plots import metric_figure, save_figure

__all__ = ["accuracy_vs_sparsity", "save_plots"]

SERIES = {
    "soup": ("soup", "sparsity"),
    "members (mean)": ("member_mean", "sparsity"),
    "best member": ("member_best", "sparsity"),
    "IMP": ("imp", "imp_sparsity"),
}


def accuracy_vs_sparsity(records: list[dict]) -> Figure:
    """Accuracy (%) against the sparsity of the prunable weights (%), one line per series
    (level 0, the dense network, starts every line).

    Raises:
      ValueError: no records.
    """
    if not records:
        raise ValueError("accuracy_vs_sparsity: no records")
    points = [
        {"series": name, "sparsity": row[x], "accuracy": row[y], "seed": row["seed"]}
        for row in level_rows(records)
        for name, (y, x) in SERIES.items()
    ]
    return metric_figure(
        points,
        "sparsity",
        "accuracy",
        ("series",),
        x_scale=100.0,
        xlabel="sparsity of the prunable weights %",
        ylabel="final test accuracy %",
    )


def save_plots(records: list[dict], run_dir) -> Path:
    """Writes ``accuracy_vs_sparsity.png`` into ``run_dir``; returns its path."""
    return save_figure(accuracy_vs_sparsity(records), Path(run_dir) / "accuracy_vs_sparsity.png")
