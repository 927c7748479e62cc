"""Figures of grokking-tickets runs, drawn off-screen (``jaxticket.workflow.plots``).

* :func:`accuracy_curves`: test (or train) accuracy over training, one seed-band curve per
  variant, with the threshold as a dotted line;
* :func:`save_plots`: both figures into the run directory.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from jaxticket.workflow.plots import history_figure, save_figure


def accuracy_curves(records: list[dict], key: str = "test_accuracy", threshold=None) -> Figure:
    """``history[key]`` (%) over training steps, one curve per variant (mean, band
    min–max over seeds); ``threshold`` (a fraction) as a horizontal dotted line.

    Raises:
      ValueError: a record's history lacks ``step`` or ``key``.
    """
    what = key.replace("_", " ")
    fig = history_figure(records, key, ("variant",), ylabel=f"{what} %")
    if threshold is not None:
        fig.axes[0].axhline(100.0 * threshold, color="gray", ls=":", lw=1)
    return fig


def save_plots(records: list[dict], run_dir, threshold=None) -> tuple[Path, Path]:
    """Writes ``test_accuracy.png`` and ``train_accuracy.png`` into ``run_dir``."""
    run_dir = Path(run_dir)
    test = save_figure(
        accuracy_curves(records, "test_accuracy", threshold), run_dir / "test_accuracy.png"
    )
    train = save_figure(accuracy_curves(records, "train_accuracy"), run_dir / "train_accuracy.png")
    return test, train
