"""Figures of ticket-transfer runs, drawn off-screen (``jaxticket.workflow.plots``).

:func:`accuracy_vs_sparsity`: target test accuracy against sparsity, one seed-band line
per variant, the dense target network as a horizontal line with its seed band.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from jaxticket.workflow.plots import metric_figure, save_figure


def accuracy_vs_sparsity(records: list[dict], key: str = "test_accuracy_final") -> Figure:
    """Target accuracy ``key`` (%) against sparsity (%), one line per variant.

    Raises:
      ValueError: no sparse target records, or a record lacks a field.
    """
    sparse = [r for r in records if r.get("phase", 0) > 0]
    if not sparse:
        raise ValueError("accuracy_vs_sparsity: no sparse records (phase >= 1)")
    label = f"target test accuracy % ({key.removeprefix('test_accuracy_')})"
    fig = metric_figure(
        sparse, "sparsity", key, ("variant",), x_scale=100.0, xlabel="sparsity %", ylabel=label
    )
    dense = [r for r in records if r.get("variant") == "target_dense"]
    if dense:
        ax = fig.axes[0]
        values = 100.0 * np.asarray([r[key] for r in dense], dtype=np.float64)
        ax.axhline(values.mean(), color="black", ls="--", lw=1.2, label="target dense")
        ax.axhspan(values.min(), values.max(), color="black", alpha=0.1, lw=0)
        ax.legend(fontsize="small", title="mean, band min–max over seeds", title_fontsize="small")
    return fig


def save_plots(records: list[dict], run_dir) -> Path:
    """Writes ``transfer_accuracy.png`` into ``run_dir``; returns its path."""
    return save_figure(accuracy_vs_sparsity(records), Path(run_dir) / "transfer_accuracy.png")
