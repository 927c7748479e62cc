"""Tables of COLT runs: one row per (cycle, kind), COLT's ticket against IMP's at the same
sparsity, with the iterations each spent finding its mask.

Accuracies are final test accuracies in percent, mean ± std [min, max] over seeds
(population std); ``find iters`` is the mean over seeds of the optimizer steps spent
finding the mask over all copies (``parallel``: with the segments' copies side by side).
``report(run_dir)`` reprints a run directory (``jaxticket report RUN_DIR``).
"""

from __future__ import annotations

from pathlib import Path

from jaxticket.workflow.store import RunStore
from jaxticket.workflow.store_results import stored_config
from jaxticket.workflow.summary import group_summary, markdown_table, mean_std_range, text_table

__all__ = ["HEADER", "format_table", "is_colt_run", "report", "summarize"]

STATS = {
    "test_accuracy_final": 100.0,
    "test_accuracy_early": 100.0,
    "sparsity": 100.0,
    "find_iterations": 1.0,
    "find_iterations_parallel": 1.0,
}
HEADER = [
    "cycle",
    "kind",
    "sparsity %",
    "seeds",
    "final acc %",
    "early acc %",
    "find iters",
    "parallel",
    "collapsed",
    "diverged",
]


def summarize(records: list[dict], *, copies: bool = False) -> list[dict]:
    """``group_summary`` rows by ``(cycle, kind)`` of the tickets (``dense``, ``colt``,
    ``imp``; with ``copies`` also each cycle's segment copies, pooled) with the sparsity
    (percent of prunable weights pruned) and the iterations."""
    chosen = [
        {**r, "sparsity": 1.0 - r["remaining"]} for r in records if copies or r["kind"] != "copy"
    ]
    return group_summary(chosen, by=("cycle", "kind"), stats=STATS)


def format_table(rows: list[dict], *, markdown: bool = False) -> str:
    """The table of :func:`summarize` rows, fixed-width text (or GitHub markdown)."""
    body = [
        [
            str(row["cycle"]),
            row["kind"],
            f"{row['sparsity_mean']:.2f}",
            str(row["seeds"]),
            mean_std_range(row, "test_accuracy_final"),
            mean_std_range(row, "test_accuracy_early"),
            f"{row['find_iterations_mean']:.0f}",
            f"{row['find_iterations_parallel_mean']:.0f}",
            str(len(row["collapsed"])) if row["collapsed"] else "-",
            str(row["diverged"]) if row["diverged"] else "-",
        ]
        for row in rows
    ]
    return (markdown_table if markdown else text_table)(HEADER, body)


def is_colt_run(run_dir) -> bool:
    """Whether ``run_dir`` holds a COLT run (its ``config.json`` names ``segments``,
    ``cycles`` and ``segment_steps``); ``False`` for anything unreadable."""
    return {"segments", "cycles", "segment_steps"} <= set(stored_config(run_dir))


def report(run_dir) -> str:
    """The title and table of a (partly) finished COLT run.

    Raises:
      ValueError: the directory or its ``results.json`` is missing or malformed.
    """
    results = RunStore.read_results(run_dir)
    c = results.get("config") or {}
    title = f"colt run {Path(run_dir)}"
    if {"model", "dataset", "segments", "steps"} <= set(c):
        title += f": {c['model']} on {c['dataset']}, {c['segments']} segments, {c['steps']} steps"
    records = results["records"]
    if not records:
        return title + "\n(no finished cycle yet)"
    if "kind" not in records[0] or "cycle" not in records[0]:
        raise ValueError(f"{Path(run_dir) / 'results.json'}: records lack 'cycle' or 'kind'")
    return title + "\n" + format_table(summarize(records))
