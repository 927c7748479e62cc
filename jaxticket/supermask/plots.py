"""Plots of supermask runs (loads matplotlib): accuracy against k with the trained dense
network as a reference line, and test accuracy over the search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from jaxticket.workflow.plots import history_figure, metric_figure, save_figure

__all__ = ["accuracy_over_search", "accuracy_vs_k", "save_plots"]


def accuracy_vs_k(records: list[dict], key: str = "test_accuracy_final") -> Figure:
    """``key`` (%) against k (% kept), one seed band per run name, the dense reference as a
    dashed line with its min–max band.

    Raises:
      ValueError: no supermask records, or a record lacks ``k``, ``variant`` or ``key``.
    """
    masked = [r for r in records if r.get("variant") != "dense"]
    if not masked:
        raise ValueError("accuracy_vs_k: no supermask records (only the dense reference)")
    label = f"test accuracy % ({key.removeprefix('test_accuracy_')})"
    fig = metric_figure(
        masked, "k", key, ("variant",), x_scale=100.0, xlabel="k: % of weights kept", ylabel=label
    )
    ax = fig.axes[0]
    dense = [r for r in records if r.get("variant") == "dense"]
    if dense:
        values = 100.0 * np.asarray([r[key] for r in dense], dtype=np.float64)
        ax.axhline(values.mean(), color="black", ls="--", lw=1.2, label="trained dense")
        ax.axhspan(values.min(), values.max(), color="black", alpha=0.1, lw=0)
        ax.legend(fontsize="small", title="variant (band min–max)", title_fontsize="small")
    return fig


def accuracy_over_search(records: list[dict]) -> Figure:
    """Test accuracy (%) over the training steps, one seed band per (run, k)."""
    return history_figure(records, "test_accuracy", ("variant", "k"), ylabel="test accuracy %")


def save_plots(records: list[dict], run_dir) -> tuple[Path, Path]:
    """Writes ``accuracy_vs_k.png`` and ``accuracy_over_search.png`` into ``run_dir``;
    returns their paths."""
    run_dir = Path(run_dir)
    acc = save_figure(accuracy_vs_k(records), run_dir / "accuracy_vs_k.png")
    over = save_figure(accuracy_over_search(records), run_dir / "accuracy_over_search.png")
    return acc, over
