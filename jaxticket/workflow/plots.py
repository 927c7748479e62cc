"""Seed-band line plots of any workflow's records, drawn off-screen (Agg, no pyplot state).

A line is the mean over seeds; the band around it spans the min to the max over seeds.
``metric_figure`` plots a record value against another, one line per group
(accuracy against sparsity, one line per method); ``history_figure`` plots a history entry
over training steps (sparsity over training). Diverged runs are marked, and the legend
names the mark. ``new_figure``, ``band_line`` and ``save_figure`` are the pieces.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxticket.workflow.multiprocess import is_primary

DIVERGED_MARK = dict(marker="v", ms=7, color="red", label="diverged run (non-finite loss/weights)")


def new_figure(size=(7, 4.5)) -> tuple[Figure, object]:
    """A figure on an Agg canvas and its one axes."""
    fig = Figure(figsize=size, dpi=120)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def band_line(ax, x, per_point, label: str, color: str, *, marker=None, ls="-") -> None:
    """The mean of each point's values as a line, with a min–max band.

    Args:
      ax: matplotlib axes.
      x: the x positions.
      per_point: for each x, the values over seeds.
      label, color, marker, ls: of the line.
    """
    mean = np.array([np.mean(v) for v in per_point])
    low = np.array([np.min(v) for v in per_point])
    high = np.array([np.max(v) for v in per_point])
    ax.plot(x, mean, color=color, marker=marker, ms=3, lw=1.5, label=label, ls=ls)
    ax.fill_between(x, low, high, color=color, alpha=0.2, lw=0)


def save_figure(fig: Figure, path) -> Path:
    """Writes ``fig`` to ``path`` (format from the suffix), creating parent folders.

    In a multi-process job only process 0 writes (``jaxticket.workflow.multiprocess``);
    the others return the path.
    """
    path = Path(path)
    if is_primary():
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        fig.savefig(path)
    return path


def metric_figure(
    records: list[dict],
    x: str,
    y: str,
    group_by: Sequence[str],
    *,
    x_scale: float = 1.0,
    y_scale: float = 100.0,
    xlabel: str | None = None,
    ylabel: str | None = None,
) -> Figure:
    """``y`` against ``x`` (record keys), one seed-band line per group of ``group_by``.

    Records with equal group values and equal ``x`` are one point (their seeds the band).

    Raises:
      ValueError: a record lacks ``x``, ``y`` or a group field (names the record).
    """
    series: dict[tuple, dict[float, list[float]]] = {}
    diverged = []
    for i, r in enumerate(records):
        missing = [k for k in (x, y, *group_by) if k not in r]
        if missing:
            raise ValueError(f"records[{i}]: missing {missing}")
        px, py = x_scale * float(r[x]), y_scale * float(r[y])
        series.setdefault(tuple(r[k] for k in group_by), {}).setdefault(px, []).append(py)
        if r.get("diverged"):
            diverged.append((px, py))
    fig, ax = new_figure()
    for i, (group, points) in enumerate(series.items()):
        xs = sorted(points)
        label = ", ".join(f"{k}={v}" for k, v in zip(group_by, group, strict=True)) or y
        if len(group_by) == 1:
            label = str(group[0])  # the legend's title names the one field
        # Ten colours, then the same colours dashed, then dotted: no two lines look alike.
        style = ("-", "--", ":")[(i // 10) % 3]
        band_line(ax, xs, [points[v] for v in xs], label, f"C{i % 10}", marker="o", ls=style)
    if diverged:
        ax.plot(*np.asarray(diverged).T, ls="none", zorder=5, **DIVERGED_MARK)
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    seeds = len({r.get("seed") for r in records})
    title = f"mean of {seeds} seeds, band min–max"
    if len(group_by) == 1:
        title = f"{group_by[0]} ({title})"
    ax.legend(fontsize="small", title=title, title_fontsize="small")
    ax.grid(True, alpha=0.3)
    return fig


def history_figure(
    records: list[dict],
    key: str,
    group_by: Sequence[str],
    *,
    scale: float = 100.0,
    ylabel: str | None = None,
) -> Figure:
    """``history[key]`` over ``history["step"]``, one seed-band curve per group.

    Seeds of a group are cut to the shortest history (a partial run is not padded).

    Raises:
      ValueError: a record's history lacks ``step`` or ``key`` (names the record).
    """
    groups: dict[tuple, list[dict]] = {}
    for i, r in enumerate(records):
        h = r.get("history") or {}
        if not isinstance(h, dict) or not h.get("step") or not h.get(key):
            raise ValueError(f"records[{i}].history: expected non-empty 'step' and {key!r} lists")
        groups.setdefault(tuple(r.get(k) for k in group_by), []).append(r)
    fig, ax = new_figure()
    for i, (group, chosen) in enumerate(groups.items()):
        n = min(min(len(r["history"]["step"]), len(r["history"][key])) for r in chosen)
        steps = np.asarray(chosen[0]["history"]["step"][:n], dtype=np.float64)
        curves = scale * np.array([r["history"][key][:n] for r in chosen], dtype=np.float64)
        label = ", ".join(f"{k}={v}" for k, v in zip(group_by, group, strict=True)) or key
        bad = [r["seed"] for r in chosen if r.get("diverged")]
        if bad:
            label += f", diverged: seed{'s' if len(bad) > 1 else ''} {', '.join(map(str, bad))}"
        band_line(ax, steps, list(curves.T), label, f"C{i % 10}")
    ax.set_xlabel("training iteration")
    ax.set_ylabel(ylabel or key)
    ax.legend(fontsize="small", title="mean, band min–max over seeds", title_fontsize="small")
    ax.grid(True, alpha=0.3)
    return fig
