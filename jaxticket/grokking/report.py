"""Tables of grokking-tickets runs: one row per variant, statistics over seeds.

The main column is the number of training steps until test accuracy first reaches the
threshold, mean ± std [min, max] over the seeds that reached it, next to how many did
(``reached``: a seed that never generalizes is counted there, never averaged in).
``report(run_dir)`` reprints a run directory (``jaxticket report RUN_DIR``).
"""

from __future__ import annotations

from pathlib import Path

from jaxticket.workflow.store import RunStore
from jaxticket.workflow.store_results import stored_config
from jaxticket.workflow.summary import group_summary, markdown_table, mean_std_range, text_table

STATS = {"steps_to_threshold": 1.0, "test_accuracy_final": 100.0}
HEADER = ["variant", "sparsity %", "seeds", "reached", "steps to threshold", "final test acc %"]
HEADER += ["collapsed", "diverged"]


def summarize(records: list[dict]) -> list[dict]:
    """``group_summary`` rows by variant with ``reached`` (seeds that reached the
    threshold)."""
    rows = group_summary(records, by=("variant", "sparsity"), stats=STATS)
    for row in rows:
        chosen = [r for r in records if r["variant"] == row["variant"]]
        row["reached"] = sum(r.get("steps_to_threshold") is not None for r in chosen)
    return rows


def format_table(rows: list[dict], *, markdown: bool = False) -> str:
    """The table of :func:`summarize` rows (fixed-width text, or GitHub markdown)."""
    body = [
        [
            row["variant"],
            f"{100.0 * row['sparsity']:.4g}",
            str(row["seeds"]),
            f"{row['reached']}/{row['seeds']}",
            mean_std_range(row, "steps_to_threshold", digits=0),
            mean_std_range(row, "test_accuracy_final"),
            str(len(row["collapsed"])) if row["collapsed"] else "-",
            str(row["diverged"]) if row["diverged"] else "-",
        ]
        for row in rows
    ]
    return (markdown_table if markdown else text_table)(HEADER, body)


def is_grokking_run(run_dir) -> bool:
    """Whether ``run_dir`` holds a grokking-tickets run (its ``config.json`` names the
    variants, the threshold and the memorization accuracy)."""
    return {"variants", "threshold", "memorized", "p"} <= set(stored_config(run_dir))


def report(run_dir) -> str:
    """The title and table of a (partly) finished grokking run directory.

    Raises:
      ValueError: the directory or its ``results.json`` is missing or malformed.
    """
    results = RunStore.read_results(run_dir)
    c = results.get("config") or {}
    title = f"grokking run {Path(run_dir)}: {c.get('model')} on (a {c.get('op')} b) mod "
    title += f"{c.get('p')}, threshold {c.get('threshold')}"
    if not results["records"]:
        return title + "\n(no finished phase yet)"
    return title + "\n" + format_table(summarize(results["records"]))
