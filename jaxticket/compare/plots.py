"""The comparison's figures, drawn off-screen (``jaxticket.workflow.plots``).

* accuracy against sparsity, one seed-band line per method, the dense baseline as a
  horizontal band (``jaxticket.sparse_train.plots.accuracy_vs_sparsity`` on the methods'
  own runs);
* :func:`layer_density_figure`: the density of every layer per method, one panel per
  target sparsity (the layerwise-ratio picture of *Structured Pruning is All You Need for
  Pruning CNNs at Initialization*).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from jaxticket.sparse_train.plots import accuracy_vs_sparsity
from jaxticket.sparse_train.report import short_names
from jaxticket.workflow.plots import save_figure

__all__ = ["layer_density_figure", "save_plots"]


def layer_density_figure(records: list[dict]) -> Figure:
    """Per-layer density (% of the layer's weights kept, mean over seeds, log scale)
    against the layer, one line per method, one panel per target sparsity.

    Raises:
      ValueError: no record of a method's own runs.
    """
    mains = [r for r in records if r.get("control") is None and r.get("method") != "dense"]
    if not mains:
        raise ValueError("layer_density_figure: no method records")
    targets = sorted({r["sparsity"] for r in mains})
    paths = list(mains[0]["layer_remaining"])
    names = short_names(paths)
    fig = Figure(figsize=(3.2 * len(targets) + 1.5, 3.6))
    axes = fig.subplots(1, len(targets), sharey=True, squeeze=False)[0]
    methods = list(dict.fromkeys(r["method"] for r in mains))
    x = np.arange(len(paths))
    for ax, target in zip(axes, targets, strict=True):
        for i, method in enumerate(methods):
            chosen = [r for r in mains if r["method"] == method and r["sparsity"] == target]
            if not chosen:
                continue
            density = [100.0 * np.mean([r["layer_remaining"][p] for r in chosen]) for p in paths]
            ax.plot(
                x,
                np.maximum(density, 1e-3),
                marker="o",
                ms=3,
                lw=1.2,
                label=method,
                color=f"C{i % 10}",
                ls=("-", "--", ":")[(i // 10) % 3],  # ten colours, then dashed, dotted
            )
        ax.set_yscale("log")
        ax.set_xticks(x, [names[p] for p in paths], rotation=60, fontsize="small")
        ax.set_title(f"sparsity {100.0 * target:.4g} %", fontsize="medium")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("layer density % (log)")
    axes[-1].legend(fontsize="small", loc="center left", bbox_to_anchor=(1.02, 0.5))
    return fig


def save_plots(records: list[dict], directory) -> tuple[Path, Path]:
    """Writes ``accuracy_vs_sparsity.png`` (the methods' own runs with seed bands, dense
    as the baseline band) and ``layer_density.png`` into ``directory``."""
    directory = Path(directory)
    mains = [r for r in records if r.get("control") is None]
    acc = save_figure(
        accuracy_vs_sparsity(mains, key="test_accuracy_early"),
        directory / "accuracy_vs_sparsity.png",
    )
    dens = save_figure(layer_density_figure(records), directory / "layer_density.png")
    return acc, dens
