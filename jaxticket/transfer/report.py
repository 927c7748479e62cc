"""Tables of ticket-transfer runs: one row per (sparsity, variant), statistics over seeds.

Accuracies on the target task (source rows: on the source task) are mean ± std [min, max]
over seeds in percent; ``overlap`` is the mean Jaccard index of the source and the native
(target) masks. ``report(run_dir)`` reprints a run directory.
"""

from __future__ import annotations

from pathlib import Path

from jaxticket.workflow.store import RunStore
from jaxticket.workflow.store_results import stored_config
from jaxticket.workflow.summary import format_summary, group_summary

STATS = {"test_accuracy_early": 100.0, "test_accuracy_final": 100.0, "overlap": 1.0}


def summarize(records: list[dict]) -> list[dict]:
    """``group_summary`` rows by ``(task, sparsity, variant)``."""
    return group_summary(records, by=("task", "sparsity", "variant"), stats=STATS)


def format_table(rows: list[dict], *, markdown: bool = False) -> str:
    """The table of :func:`summarize` rows (fixed-width text, or GitHub markdown)."""
    return format_summary(rows, ("task", "sparsity", "variant"), tuple(STATS), markdown=markdown)


def is_transfer_run(run_dir) -> bool:
    """Whether ``run_dir`` holds a transfer run (its ``config.json`` names both tasks)."""
    return {"source_classes", "target_classes", "source_op", "variants"} <= set(
        stored_config(run_dir)
    )


def report(run_dir) -> str:
    """The title and table of a (partly) finished transfer run directory.

    Raises:
      ValueError: the directory or its ``results.json`` is missing or malformed.
    """
    results = RunStore.read_results(run_dir)
    c = results.get("config") or {}
    title = f"transfer run {Path(run_dir)}: {c.get('model')} on {c.get('dataset')}"
    if not results["records"]:
        return title + "\n(no finished phase yet)"
    return title + "\n" + format_table(summarize(results["records"]))
