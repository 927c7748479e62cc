"""Figures of a lottery run, drawn off-screen (Agg canvas, no pyplot state).

Lines are means over seeds; the shaded band around each spans the min to the max over seeds
(as the error bars of Frankle & Carbin's figures do), and the legend says so. Points of
levels where a layer collapsed (no weight left) and of diverged runs are marked, and the
legend names the marks.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullLocator

from jaxticket.lottery.report import CONTROLS, check_records, main_records, record_collapsed
from jaxticket.workflow.plots import band_line, new_figure, save_figure

_COLORS = {"ticket": "C0", "reinit": "C3", "random_prune": "C2", "shuffle": "C4"}
_COLLAPSED = dict(marker="X", ms=9, color="black", label="layer collapsed (no weight left)")
_DIVERGED = dict(marker="v", ms=7, color="red", label="diverged run (non-finite loss/weights)")
_LABELS = {
    "ticket": "winning ticket",
    "reinit": "random reinit",
    "random_prune": "random pruning",
    "shuffle": "shuffled mask",
}


def plot_accuracy_vs_remaining(records: list[dict], path) -> Path:
    """Early-stop test accuracy against % of weights remaining, tickets vs. controls.

    The x axis is logarithmic and decreasing to the right (100, 51.3, 26.2, ...), ticked at
    the tickets' levels; the dense network (level 0) is a dashed reference line.

    Args:
      records: results records (``results.json["records"]``).
      path: where to write the image (format from the suffix, e.g. ``.png``).

    Returns:
      ``path`` as a ``Path``; parent directories are created.
    """
    return save_figure(accuracy_figure(records), path)


def accuracy_figure(records: list[dict]) -> Figure:
    """The figure of :func:`plot_accuracy_vs_remaining`, not yet saved."""
    check_records(records)
    fig, ax = new_figure()
    ticks = []
    collapsed, diverged = [], []
    series = [("ticket", None)] + [(c, c) for c in CONTROLS]
    for name, variant in series:
        points = []
        for level in sorted({r["level"] for r in records}):
            if variant is None:
                chosen = main_records(records, level)
            else:
                chosen = [r for r in records if r["level"] == level and r["variant"] == variant]
            if chosen:
                remaining = 100.0 * np.mean([r["remaining"] for r in chosen])
                accs = [100.0 * r["test_accuracy_early"] for r in chosen]
                points.append((remaining, accs))
                if any(record_collapsed(r) for r in chosen):
                    collapsed.append((remaining, np.mean(accs)))
                pairs = zip(chosen, accs, strict=True)
                diverged += [(remaining, a) for r, a in pairs if r.get("diverged")]
        if not points:
            continue
        x = np.array([p[0] for p in points])
        band_line(ax, x, [p[1] for p in points], _LABELS[name], _COLORS[name], marker="o")
        if variant is None:
            ticks = x
    dense = main_records(records, 0)
    if dense:
        acc = 100.0 * np.mean([r["test_accuracy_early"] for r in dense])
        ax.axhline(acc, color="0.4", ls="--", lw=1, label=f"dense network ({acc:.2f}%)")
    for marks, style in ((collapsed, _COLLAPSED), (diverged, _DIVERGED)):
        if marks:
            ax.plot(*np.asarray(marks).T, ls="none", zorder=5, **style)
    _log_remaining_axis(ax, ticks)
    ax.set_xlabel("weights remaining (%)")
    ax.set_ylabel("test accuracy at early stop (%)")
    ax.set_title("Test accuracy vs. weights remaining")
    seeds = len({r["seed"] for r in records})
    ax.legend(
        fontsize="small", title=f"mean of {seeds} seeds, band min–max", title_fontsize="small"
    )
    return fig


def plot_training_curves(records: list[dict], levels, path) -> Path:
    """Ticket test accuracy over training iterations, one curve per chosen level.

    Args:
      records: results records with ``history`` (``step`` and ``test_accuracy`` lists).
      levels: pruning levels to draw (``None``: all); each is labelled by % remaining.
      path: where to write the image.

    Returns:
      ``path`` as a ``Path``; parent directories are created.

    Raises:
      ValueError: a level has no ticket records, or a record lacks the history lists.
    """
    return save_figure(training_curves_figure(records, levels), path)


def training_curves_figure(records: list[dict], levels) -> Figure:
    """The figure of :func:`plot_training_curves`, not yet saved; a curve's label says
    when its level had a collapsed layer or diverged seeds."""
    check_records(records)
    available = sorted({r["level"] for r in records})
    levels = available if levels is None else list(levels)
    fig, ax = new_figure()
    for i, level in enumerate(levels):
        chosen = main_records(records, level)
        if not chosen:
            raise ValueError(f"levels: level {level!r} has no ticket records (have {available})")
        steps, curves = _histories(records, chosen)
        remaining = 100.0 * np.mean([r["remaining"] for r in chosen])
        label = f"{remaining:.3g}% remaining (level {level})"
        if any(record_collapsed(r) for r in chosen):
            label += ", layer collapsed"
        bad = [r["seed"] for r in chosen if r.get("diverged")]
        if bad:
            label += f", diverged: seed{'s' if len(bad) > 1 else ''} {', '.join(map(str, bad))}"
        band_line(ax, steps, curves, label, f"C{i % 10}")
    ax.set_xlabel("training iteration")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Ticket test accuracy during training")
    ax.legend(fontsize="small", title="mean, band min–max over seeds", title_fontsize="small")
    return fig


def _histories(records: list[dict], chosen: list[dict]) -> tuple[np.ndarray, list]:
    # Seeds of one level share an evaluation grid; a partial run may be shorter, so the
    # curves are cut to the shortest one rather than padded.
    for r in chosen:
        history = r.get("history") or {}
        for key in ("step", "test_accuracy"):
            values = history.get(key) if isinstance(history, dict) else None
            if values is None or np.ndim(values) != 1 or len(values) == 0:
                i = next(j for j, q in enumerate(records) if q is r)
                raise ValueError(f"records[{i}].history.{key}: expected a non-empty 1-d list")
    n = min(min(len(r["history"]["step"]), len(r["history"]["test_accuracy"])) for r in chosen)
    steps = np.asarray(chosen[0]["history"]["step"][:n], dtype=np.float64)
    curves = np.array([r["history"]["test_accuracy"][:n] for r in chosen], dtype=np.float64)
    return steps, list((100.0 * curves).T)


def _log_remaining_axis(ax, ticks) -> None:
    ax.set_xscale("log")
    # A log axis cannot show 0 % remaining (a collapsed network): keep the ticks positive
    # (the table and the collapsed column report such a level).
    ticks = sorted(
        {t for t in np.round(np.asarray(ticks, dtype=np.float64), 6) if t > 0}, reverse=True
    )
    if ticks:
        ax.set_xlim(ticks[0] * 1.15, ticks[-1] / 1.15)  # reversed: decreasing to the right
        step = max(1, math.ceil(len(ticks) / 12))  # keep labels from overlapping
        shown = ticks[::step]
        ax.xaxis.set_major_locator(FixedLocator(shown))
        ax.set_xticklabels([f"{t:.3g}" for t in shown])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.grid(True, which="major", alpha=0.3)
