"""Figures of sparse-training runs, drawn off-screen (``jaxticket.workflow.plots``).

* :func:`accuracy_vs_sparsity`: test accuracy against target sparsity, one seed-band line
  per method; dense records (the baseline) as a horizontal line with its seed band. It
  takes any records, so the records of several runs (methods) make one comparison figure.
* :func:`sparsity_over_training`: the global sparsity of the prunable weights at every
  evaluation, one curve per (method, target).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from jaxticket.workflow.plots import history_figure, metric_figure, new_figure, save_figure


def accuracy_vs_sparsity(records: list[dict], key: str = "test_accuracy_final") -> Figure:
    """Accuracy ``key`` (%) against target sparsity (%), one line per method.

    Args:
      records: sparse-training records, of one run or several concatenated.
      key: the record's accuracy (``test_accuracy_final`` or ``test_accuracy_early``).

    Raises:
      ValueError: no records, or a record lacks ``method``, ``sparsity`` or ``key``.
    """
    if not records:
        raise ValueError("accuracy_vs_sparsity: no records")
    dense = [r for r in records if r.get("method") == "dense"]
    sparse = [r for r in records if r.get("method") != "dense"]
    label = f"test accuracy % ({key.removeprefix('test_accuracy_')})"
    if sparse:
        fig = metric_figure(
            sparse,
            "sparsity",
            key,
            ("method",),
            x_scale=100.0,
            xlabel="target sparsity %",
            ylabel=label,
        )
        ax = fig.axes[0]
    else:
        fig, ax = new_figure()
        ax.set_xlabel("target sparsity %")
        ax.set_ylabel(label)
    if dense:
        values = 100.0 * np.asarray([r[key] for r in dense], dtype=np.float64)
        ax.axhline(values.mean(), color="black", ls="--", lw=1.2, label="dense")
        ax.axhspan(values.min(), values.max(), color="black", alpha=0.1, lw=0)
        seeds = len({r.get("seed") for r in records})
        title = f"mean of {seeds} seeds, band min–max"
        ax.legend(fontsize="small", title=title, title_fontsize="small")
    return fig


def sparsity_over_training(records: list[dict]) -> Figure:
    """``history["sparsity"]`` (%) against the training step, one curve per target.

    Raises:
      ValueError: a record's history lacks ``step`` or ``sparsity``.
    """
    return history_figure(
        records, "sparsity", ("method", "sparsity"), ylabel="sparsity of the prunable weights %"
    )


def save_plots(records: list[dict], run_dir) -> tuple[Path, Path]:
    """Writes ``accuracy_vs_sparsity.png`` and ``sparsity_over_training.png`` into
    ``run_dir``; returns their paths."""
    run_dir = Path(run_dir)
    acc = save_figure(accuracy_vs_sparsity(records), run_dir / "accuracy_vs_sparsity.png")
    over = save_figure(sparsity_over_training(records), run_dir / "sparsity_over_training.png")
    return acc, over
