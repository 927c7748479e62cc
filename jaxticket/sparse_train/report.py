"""Tables of sparse-training runs: one row per (method, target sparsity), stats over seeds.

Accuracies are mean ± std [min, max] over seeds in percent (population std, ``ddof=0``);
final sparsity is the mean over seeds of the prunable weights pruned at the end; the layer
column gives each prunable leaf's final sparsity (mean over seeds). What went wrong is a
column of its own (collapsed leaves, diverged runs), never averaged away.
``report(run_dir)`` reprints a run directory (``jaxticket report RUN_DIR``).
"""

from __future__ import annotations

from pathlib import Path

from jaxticket.lottery.store import RunStore
from jaxticket.sparse_train.config import METHODS
from jaxticket.workflow.store_results import stored_config
from jaxticket.workflow.summary import group_summary, markdown_table, mean_std_range, text_table

STATS = {"test_accuracy_early": 100.0, "test_accuracy_final": 100.0, "final_sparsity": 100.0}
HEADER = [
    "method",
    "target %",
    "final %",
    "seeds",
    "early acc %",
    "final acc %",
    "updates",
    "layer sparsity %",
    "collapsed",
    "diverged",
]


def summarize(records: list[dict]) -> list[dict]:
    """``group_summary`` rows by ``(method, sparsity)`` with the final sparsity, the mean
    number of mask updates (``updates``) and the per-layer final sparsity in percent
    (``layer_sparsity``, leaves named by :func:`short_names`)."""
    rows = group_summary(records, by=("method", "sparsity"), stats=STATS)
    for row in rows:
        chosen = [
            r for r in records if (r["method"], r["sparsity"]) == (row["method"], row["sparsity"])
        ]
        updates = sorted({int(r.get("mask_updates", 0)) for r in chosen})
        row["updates"] = "/".join(map(str, updates))
        names = short_names(list(row["layer_remaining"]))
        row["layer_sparsity"] = {
            names[p]: 100.0 * (1.0 - v) for p, v in row["layer_remaining"].items()
        }
    return rows


def format_table(rows: list[dict], *, markdown: bool = False) -> str:
    """The table of :func:`summarize` rows, fixed-width text (or GitHub markdown)."""
    body = []
    for row in rows:
        layers = " ".join(f"{k}={v:.1f}" for k, v in row["layer_sparsity"].items())
        body.append(
            [
                row["method"],
                f"{100.0 * row['sparsity']:.4g}",
                f"{row['final_sparsity_mean']:.2f}",
                str(row["seeds"]),
                mean_std_range(row, "test_accuracy_early"),
                mean_std_range(row, "test_accuracy_final"),
                row["updates"],
                layers or "-",
                str(len(row["collapsed"])) if row["collapsed"] else "-",
                str(row["diverged"]) if row["diverged"] else "-",
            ]
        )
    return (markdown_table if markdown else text_table)(HEADER, body)


def short_names(paths: list[str]) -> dict[str, str]:
    """Leaf paths shortened to their first component when that stays unique
    (``dense1/kernel`` -> ``dense1``), else kept whole."""
    first = {p: p.split("/")[0] for p in paths}
    unique = len(set(first.values())) == len(paths)
    return first if unique else {p: p for p in paths}


def is_sparse_train_run(run_dir) -> bool:
    """Whether ``run_dir`` holds a sparse-training run (its ``config.json`` names a
    method, its sparsities, ``every`` and ``zeta``); ``False`` for anything unreadable."""
    config = stored_config(run_dir)
    return {"method", "sparsities", "every", "zeta"} <= set(config) and config["method"] in METHODS


def report(run_dir) -> str:
    """The title (method, model, data set, steps) and table of a (partly) finished run.

    Raises:
      ValueError: the directory or its ``results.json`` is missing or malformed.
    """
    results = RunStore.read_results(run_dir)
    config = results.get("config") or {}
    title = f"sparse-train run {Path(run_dir)}"
    if {"method", "model", "dataset", "steps"} <= set(config):
        title += (
            f": {config['method']}, {config['model']} on {config['dataset']}, "
            f"{config['steps']} steps"
        )
    records = results["records"]
    if not records:
        return title + "\n(no finished phase yet)"
    missing = [k for k in ("method", "sparsity", "final_sparsity") if k not in records[0]]
    if missing:
        raise ValueError(f"{Path(run_dir) / 'results.json'}: records lack {missing}")
    return title + "\n" + format_table(summarize(records))
