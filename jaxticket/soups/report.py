"""Tables of sparse-model-soup runs: one row per level, the soup against its members
(their mean and their best) and plain IMP, stats over seeds.

Accuracies are final test accuracies in percent, mean ± std [min, max] over seeds
(population std). Per seed, a level's member mean is the mean over its members and its
best member the one with the highest final validation accuracy (chosen without the test
set); ``soup - best`` is the soup's gain over that member. ``report(run_dir)`` reprints a
run directory (``jaxticket report RUN_DIR``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxticket.workflow.store import RunStore
from jaxticket.workflow.store_results import stored_config
from jaxticket.workflow.summary import group_summary, markdown_table, mean_std_range, text_table

__all__ = ["HEADER", "format_table", "is_soups_run", "level_rows", "report", "summarize"]

COLUMNS = ("soup", "member_mean", "member_best", "imp", "gain")
HEADER = [
    "level",
    "soup sparsity %",
    "IMP sparsity %",
    "seeds",
    "soup acc %",
    "members mean %",
    "best member %",
    "IMP acc %",
    "soup - best",
    "collapsed",
    "diverged",
]


def level_rows(records: list[dict]) -> list[dict]:
    """One row per (level, seed): ``level``, ``seed``, ``sparsity`` (the soup's mask),
    ``imp_sparsity`` and, as fractions, ``soup``, ``member_mean``, ``member_best`` (by
    validation accuracy), ``imp`` and ``gain`` (soup - best member); level 0 holds the
    dense network in every column but ``gain`` (0), ``collapsed`` and ``diverged``."""
    rows = []
    for level in sorted({r["level"] for r in records}):
        for seed in sorted({r["seed"] for r in records if r["level"] == level}):
            here = [r for r in records if r["level"] == level and r["seed"] == seed]
            by = {
                k: [r for r in here if r["kind"] == k] for k in ("dense", "member", "soup", "imp")
            }
            if by["dense"]:
                d = by["dense"][0]
                acc = d["test_accuracy_final"]
                row = dict(soup=acc, member_mean=acc, member_best=acc, imp=acc, gain=0.0)
                row.update(sparsity=1 - d["remaining"], imp_sparsity=1 - d["remaining"])
                collapsed, diverged = list(d["collapsed"]), int(d["diverged"])
            else:
                members = by["member"]
                soup, imp = by["soup"][0], by["imp"][0]
                accs = [m["test_accuracy_final"] for m in members]
                best = max(members, key=lambda m: m["history"]["val_accuracy"][-1])
                row = dict(
                    soup=soup["test_accuracy_final"],
                    member_mean=float(np.mean(accs)),
                    member_best=best["test_accuracy_final"],
                    imp=imp["test_accuracy_final"],
                    gain=soup["test_accuracy_final"] - best["test_accuracy_final"],
                    sparsity=1 - soup["remaining"],
                    imp_sparsity=1 - imp["remaining"],
                )
                collapsed = sorted({p for r in here for p in r["collapsed"]})
                diverged = sum(bool(r["diverged"]) for r in here if r["kind"] != "soup")
            rows.append(
                {"level": level, "seed": seed, **row, "collapsed": collapsed, "diverged": diverged}
            )
    return rows


def summarize(records: list[dict]) -> list[dict]:
    """``group_summary`` of :func:`level_rows` by level (percent), with the mean soup and
    IMP sparsities (percent) and the collapsed leaves and diverged runs of the level."""
    rows = level_rows(records)
    stats = {k: 100.0 for k in (*COLUMNS, "sparsity", "imp_sparsity")}
    out = group_summary(rows, by=("level",), stats=stats)
    for row in out:
        chosen = [r for r in rows if r["level"] == row["level"]]
        row["collapsed"] = sorted({p for r in chosen for p in r["collapsed"]})
        row["diverged"] = sum(r["diverged"] for r in chosen)
    return out


def format_table(rows: list[dict], *, markdown: bool = False) -> str:
    """The table of :func:`summarize` rows, fixed-width text (or GitHub markdown)."""
    body = [
        [
            str(row["level"]),
            f"{row['sparsity_mean']:.2f}",
            f"{row['imp_sparsity_mean']:.2f}",
            str(row["seeds"]),
            *(mean_std_range(row, k) for k in COLUMNS),
            str(len(row["collapsed"])) if row["collapsed"] else "-",
            str(row["diverged"]) if row["diverged"] else "-",
        ]
        for row in rows
    ]
    return (markdown_table if markdown else text_table)(HEADER, body)


def is_soups_run(run_dir) -> bool:
    """Whether ``run_dir`` holds a soup run (its ``config.json`` names ``members``,
    ``vary`` and ``retrain``); ``False`` for anything unreadable."""
    return {"members", "vary", "retrain", "levels"} <= set(stored_config(run_dir))


def report(run_dir) -> str:
    """The title and table of a (partly) finished soup run.

    Raises:
      ValueError: the directory or its ``results.json`` is missing or malformed.
    """
    results = RunStore.read_results(run_dir)
    c = results.get("config") or {}
    title = f"soups run {Path(run_dir)}"
    if {"model", "dataset", "members", "vary", "retrain"} <= set(c):
        title += (
            f": {c['model']} on {c['dataset']}, {c['members']} members differing in "
            f"{c['vary']}, retrain from {c['retrain']}"
        )
    records = results["records"]
    if not records:
        return title + "\n(no finished level yet)"
    if "kind" not in records[0]:
        raise ValueError(f"{Path(run_dir) / 'results.json'}: records lack 'kind'")
    return title + "\n" + format_table(summarize(records))
