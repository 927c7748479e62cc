"""Figures of a stability run, drawn off-screen (``jaxticket.workflow.plots``).

* :func:`error_vs_alpha`: test error along the path, the mean over pairs with a min–max
  band, one line per rewind step k (and, with weight matching, before and after alignment);
* :func:`instability_vs_rewind`: the error barrier against k, the mean over pairs with a
  min–max band, the 2 % stability threshold dashed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from jaxticket.stability.interpolate import STABLE_BELOW
from jaxticket.workflow.plots import band_line, new_figure, save_figure

__all__ = ["error_vs_alpha", "instability_vs_rewind", "save_plots", "sweep_records"]


def sweep_records(records: list[dict]) -> dict[int, list[dict]]:
    """The pair records of the sweep phases, by rewind step (in order)."""
    by_k: dict[int, list[dict]] = {}
    for r in records:
        if "barrier" in r and "rewind_step" in r:
            by_k.setdefault(int(r["rewind_step"]), []).append(r)
    return dict(sorted(by_k.items()))


def error_vs_alpha(records: list[dict]) -> Figure:
    """Test error (%) against α, one seed-band line per rewind step (and ``match``).

    Raises:
      ValueError: no sweep or match records.
    """
    by_k = sweep_records(records)
    matched = [r for r in records if r.get("variant") == "match"]
    if not by_k and not matched:
        raise ValueError("error_vs_alpha: no path records (sweep or match)")
    fig, ax = new_figure()
    colors = iter(f"C{i}" for i in range(100))
    for k, rows in by_k.items():
        _path_line(ax, rows, "errors", f"k = {k} ({rows[0]['variant']})", next(colors))
    if matched:
        _path_line(ax, matched, "errors_before", "different inits", next(colors), ls="--")
        _path_line(ax, matched, "errors_after", "different inits, matched", next(colors))
    ax.set_xlabel("α (interpolation weight)")
    ax.set_ylabel("test error %")
    bn = any(r.get("batchnorm_recomputed") for r in records)
    title = "mean over pairs, band min–max" + (" (BatchNorm recomputed)" if bn else "")
    ax.legend(fontsize="small", title=title, title_fontsize="small")
    return fig


def instability_vs_rewind(records: list[dict]) -> Figure:
    """Error barrier (%) against rewind step k, the mean over pairs with a min–max band.

    Raises:
      ValueError: no sweep records.
    """
    by_k = sweep_records(records)
    if not by_k:
        raise ValueError("instability_vs_rewind: no sweep records")
    fig, ax = new_figure()
    ks = list(by_k)
    values = [100.0 * np.asarray([r["barrier"] for r in by_k[k]]) for k in ks]
    variant = by_k[ks[0]][0]["variant"]
    band_line(ax, ks, values, f"barrier ({variant})", "C0", marker="o")
    ax.axhline(100 * STABLE_BELOW, color="black", ls=":", lw=1, label="stable below 2 %")
    ax.set_xlabel("rewind step k")
    ax.set_ylabel("error barrier %")
    ax.legend(fontsize="small", title="mean over pairs, band min–max", title_fontsize="small")
    return fig


def save_plots(records: list[dict], run_dir) -> list[Path]:
    """Writes ``error_vs_alpha.png`` and, with several rewind steps,
    ``instability_vs_rewind.png`` into ``run_dir``; returns the paths written."""
    run_dir = Path(run_dir)
    paths = [save_figure(error_vs_alpha(records), run_dir / "error_vs_alpha.png")]
    if len(sweep_records(records)) > 1:
        fig = instability_vs_rewind(records)
        paths.append(save_figure(fig, run_dir / "instability_vs_rewind.png"))
    return paths


def _path_line(ax, rows: list[dict], key: str, label: str, color: str, *, ls="-") -> None:
    errors = 100.0 * np.asarray([r[key] for r in rows], dtype=np.float64)  # [pairs, alphas]
    band_line(ax, rows[0]["alphas"], list(errors.T), label, color, ls=ls)
