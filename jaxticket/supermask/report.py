"""Tables of supermask runs: one row per (run, k), statistics over seeds.

Accuracies are mean ± std [min, max] over seeds in percent (population std, ``ddof=0``):
``start`` is the test accuracy before the search (for ``jackpot`` the magnitude mask of the
trained network, unsearched), ``early``/``final`` as in every workflow. ``kept %`` is the
mean fraction of the scored weights the masks keep. For ``jackpot`` rows, ``steps to
scratch`` is the search cost of the magnitude start: the mean (and range) over seeds of the
first step at which it reaches the final accuracy of the search from random scores
(``never``: seeds that did not). ``report(run_dir)`` reprints a run directory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxticket.workflow.store import RunStore
from jaxticket.workflow.store_results import stored_config
from jaxticket.workflow.summary import format_summary, group_summary

__all__ = ["format_table", "is_supermask_run", "report", "summarize"]

STATS = {
    "start_accuracy": 100.0,
    "test_accuracy_early": 100.0,
    "test_accuracy_final": 100.0,
    "remaining": 100.0,
}
BY = ("variant", "k")


def summarize(records: list[dict]) -> list[dict]:
    """``group_summary`` rows by ``(variant, k)`` with ``kept`` (the mean % kept) and, for
    ``jackpot`` rows, ``steps_to_scratch`` as text (``mean [min, max]``, the never-reached
    seeds counted)."""
    rows = group_summary(records, by=BY, stats=STATS)
    for row in rows:
        row["kept"] = row["remaining_mean"]
        chosen = [r for r in records if (r["variant"], r["k"]) == (row["variant"], row["k"])]
        row["steps_to_scratch"] = _cost(chosen) if row["variant"] == "jackpot" else None
    return rows


def _cost(chosen: list[dict]) -> str:
    steps = [r.get("steps_to_scratch") for r in chosen]
    reached = np.asarray([s for s in steps if s is not None], dtype=np.float64)
    never = len(steps) - len(reached)
    text = (
        f"{reached.mean():.0f} [{reached.min():.0f}, {reached.max():.0f}]" if len(reached) else ""
    )
    if never:
        text = (text + " " if text else "") + f"never {never}"
    return text


def format_table(rows: list[dict], *, markdown: bool = False) -> str:
    """The table of :func:`summarize` rows (fixed-width text or GitHub markdown)."""
    extra = {"kept %": "kept", "steps to scratch": "steps_to_scratch"}
    stats = ("start_accuracy", "test_accuracy_early", "test_accuracy_final")
    return format_summary(rows, BY, stats, extra=extra, markdown=markdown)


def is_supermask_run(run_dir) -> bool:
    """Whether ``run_dir`` holds a supermask run (its ``config.json`` names a variant, ks,
    weight_init and saliency); ``False`` for anything unreadable."""
    config = stored_config(run_dir)
    return {"variant", "ks", "weight_init", "saliency"} <= set(config)


def report(run_dir) -> str:
    """The title (variant, model, data set, steps) and table of a (partly) finished run.

    Raises:
      ValueError: the directory or its ``results.json`` is missing or malformed.
    """
    results = RunStore.read_results(run_dir)
    config = results.get("config") or {}
    title = (
        f"supermask run {Path(run_dir)}: {config.get('variant')}, {config.get('model')} on "
        f"{config.get('dataset')}, {config.get('steps')} steps"
    )
    if not results["records"]:
        return title + "\n(no finished phase yet)"
    return title + "\n" + format_table(summarize(results["records"]))
