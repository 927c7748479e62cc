"""The comparison's tables: accuracy and per-layer density per (method, control, sparsity),
and what each control says about each method.

Accuracies are mean ± std [min, max] over seeds, in percent (population std). The layer
column gives each prunable leaf's density (% of its weights kept, mean over seeds); a
collapsed layer (no weight left) or a diverged run has a column of its own, never averaged
away. :func:`control_table` sets each control against its method at the same sparsity:
the difference of mean accuracies and whether it exceeds the seed spread (the larger of the
two standard deviations). For the at-init sanity checks of Frankle et al. (2021): a mask that
does not beat its layerwise shuffle carries no information in its positions, only in its
per-layer densities.
"""

from __future__ import annotations

from jaxticket.sparse_train.report import short_names
from jaxticket.workflow.summary import group_summary, markdown_table, mean_std_range, text_table

__all__ = ["control_table", "format_table", "summarize", "verdicts"]

STATS = {"test_accuracy_early": 100.0, "test_accuracy_final": 100.0}
BY = ("method", "control", "sparsity")


def summarize(records: list[dict]) -> list[dict]:
    """``group_summary`` rows by (method, control, sparsity), with ``layer_density`` (% kept
    per leaf, leaves named by ``short_names``)."""
    rows = group_summary(records, by=BY, stats=STATS)
    for row in rows:
        names = short_names(list(row["layer_remaining"]))
        row["layer_density"] = {names[p]: 100.0 * v for p, v in row["layer_remaining"].items()}
    return rows


def format_table(rows: list[dict], *, markdown: bool = False) -> str:
    """The accuracy table of :func:`summarize` rows (text, or GitHub markdown)."""
    header = [
        "method",
        "control",
        "sparsity %",
        "seeds",
        "early-stop acc %",
        "final acc %",
        "layer density %",
        "collapsed",
        "diverged",
    ]
    body = []
    for row in rows:
        layers = " ".join(f"{k}={v:.3g}" for k, v in row["layer_density"].items())
        body.append(
            [
                row["method"],
                row["control"] or "-",
                f"{100.0 * row['sparsity']:.4g}",
                str(row["seeds"]),
                mean_std_range(row, "test_accuracy_early"),
                mean_std_range(row, "test_accuracy_final"),
                layers or "-",
                ", ".join(row["collapsed"]) if row["collapsed"] else "-",
                str(row["diverged"]) if row["diverged"] else "-",
            ]
        )
    return (markdown_table if markdown else text_table)(header, body)


def verdicts(rows: list[dict], key: str = "test_accuracy_early") -> list[dict]:
    """Each control against its method at the same sparsity.

    Returns:
      One dict per control row: ``method``, ``control``, ``sparsity``, ``difference`` (the
      method's mean accuracy minus the control's, percentage points), ``spread`` (the larger
      of their standard deviations) and ``beats`` (``difference > spread``); ``None`` values
      when either side has no finite accuracy (a diverged or missing run).
    """
    main = {(r["method"], r["sparsity"]): r for r in rows if r["control"] is None}
    out = []
    for r in rows:
        base = main.get((r["method"], r["sparsity"]))
        if r["control"] is None or base is None:
            continue
        a, b = base[f"{key}_mean"], r[f"{key}_mean"]
        spread = max(base[f"{key}_std"], r[f"{key}_std"])
        finite = a == a and b == b
        out.append(
            {
                "method": r["method"],
                "control": r["control"],
                "sparsity": r["sparsity"],
                "difference": a - b if finite else None,
                "spread": spread if finite else None,
                "beats": (a - b > spread) if finite else None,
            }
        )
    return out


def control_table(rows: list[dict], *, markdown: bool = False) -> str:
    """:func:`verdicts` as a table: one line per (method, sparsity), one column per control,
    each cell ``+d.dd ✓`` when the method beats the control by more than the seed spread,
    ``+d.dd ✗`` when not (``-`` where the control did not run)."""
    found = verdicts(rows)
    controls = list(dict.fromkeys(v["control"] for v in found))
    cells: dict[tuple, dict[str, str]] = {}
    for v in found:
        line = cells.setdefault((v["method"], v["sparsity"]), {})
        if v["difference"] is None:
            line[v["control"]] = "n/a"
        else:
            line[v["control"]] = f"{v['difference']:+.2f} {'✓' if v['beats'] else '✗'}"
    header = ["method", "sparsity %", *(f"vs {c}" for c in controls)]
    body = [
        [m, f"{100.0 * s:.4g}", *(line.get(c, "-") for c in controls)]
        for (m, s), line in cells.items()
    ]
    return (markdown_table if markdown else text_table)(header, body)


def is_compare_run(run_dir) -> bool:
    """Whether ``run_dir`` holds a comparison (its ``config.json`` has ``imp_fraction`` and
    ``controls``); ``False`` for anything unreadable."""
    from jaxticket.workflow.store_results import stored_config

    return {"imp_fraction", "controls", "sparsities"} <= set(stored_config(run_dir))


def report(run_dir) -> str:
    """The accuracy and control tables of a (partly) finished comparison directory.

    Raises:
      ValueError: the directory or its ``results.json`` is missing or malformed.
    """
    from jaxticket.workflow.store import RunStore

    records = RunStore.read_results(run_dir)["records"]
    if not records:
        return f"comparison {run_dir}\n(no finished method yet)"
    missing = [k for k in (*BY, "seed") if k not in records[0]]
    if missing:
        raise ValueError(f"{run_dir}/results.json: records lack {missing}")
    rows = summarize(records)
    return f"comparison {run_dir}\n{format_table(rows)}\n\n{control_table(rows)}"
