"""Statistics over seeds, grouped by any record fields, and tables of them.

``group_summary(records, by=("method", "sparsity"))`` gives one row per distinct value of
the ``by`` fields with, for each statistic, the mean, the population standard deviation
(``ddof=0``: one seed gives 0, not NaN), the min and the max over the group's seeds; the
mean fraction remaining per layer; the collapsed leaves and the number of diverged runs.
``format_summary`` prints such rows; what went wrong is a column of its own, never
averaged away. ``text_table`` and ``markdown_table`` lay out any header and cells.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

# Statistics of the default summary: name -> (record key, scale); accuracies in percent.
ACCURACY = {"test_accuracy_early": 100.0, "test_accuracy_final": 100.0}


def group_summary(
    records: list[dict],
    by: Sequence[str],
    stats: Mapping[str, float] = ACCURACY,
) -> list[dict]:
    """One row per group of records sharing the values of the fields ``by``.

    Args:
      records: results records (see ``jaxticket.workflow.records``).
      by: the fields that name a group, e.g. ``("method", "sparsity")``; rows follow the
        groups' first appearance in ``records``.
      stats: record keys to summarize and the factor each is shown in (100 for percent);
        a record missing a key (or holding ``None``) is left out of that statistic.

    Returns:
      Dicts with the ``by`` fields, ``seeds`` (records in the group), ``<key>_mean``,
      ``_std``, ``_min``, ``_max`` per statistic (NaN without values),
      ``layer_remaining`` (mean fraction per leaf), ``collapsed`` (sorted leaves collapsed
      in any run) and ``diverged`` (how many runs diverged).

    Raises:
      ValueError: a record lacks one of the ``by`` fields (names the record).
    """
    groups: dict[tuple, list[dict]] = {}
    for i, r in enumerate(records):
        missing = [k for k in by if k not in r]
        if missing:
            raise ValueError(f"records[{i}]: missing the group fields {missing}")
        groups.setdefault(tuple(_hashable(r[k]) for k in by), []).append(r)
    rows = []
    for chosen in groups.values():
        row = dict(zip(by, (chosen[0][k] for k in by), strict=True))
        row["seeds"] = len(chosen)
        for key, scale in stats.items():
            values = [scale * r[key] for r in chosen if r.get(key) is not None]
            row.update(_stats(key, values))
        per_layer: dict[str, list[float]] = {}
        for r in chosen:
            for p, v in (r.get("layer_remaining") or {}).items():
                per_layer.setdefault(p, []).append(v)
        row["layer_remaining"] = {p: float(np.mean(v)) for p, v in per_layer.items()}
        row["collapsed"] = sorted({p for r in chosen for p in r.get("collapsed") or ()})
        row["diverged"] = sum(bool(r.get("diverged")) for r in chosen)
        rows.append(row)
    return rows


def format_summary(
    rows: list[dict],
    by: Sequence[str],
    stats: Sequence[str] = tuple(ACCURACY),
    *,
    extra: Mapping[str, str] | None = None,
    markdown: bool = False,
) -> str:
    """A table of :func:`group_summary` rows: the ``by`` fields, the seed count, each
    statistic as ``mean ± std [min, max]``, any ``extra`` columns, then ``collapsed``
    (leaves; ``-`` none) and ``diverged`` (runs; ``-`` none).

    Args:
      rows: output of ``group_summary``.
      by: the group fields shown first.
      stats: the statistics to show, each a key given to ``group_summary``.
      extra: more columns, header -> row key (its value is shown with ``str``, floats
        with three significant digits; a dict such as ``layer_remaining`` as
        ``leaf=value`` pairs).
      markdown: a GitHub markdown table instead of fixed-width text.
    """
    extra = dict(extra or {})
    header = [*by, "seeds", *stats, *extra, "collapsed", "diverged"]
    body = []
    for row in rows:
        line = [format_value(row[k]) for k in by] + [str(row["seeds"])]
        line += [mean_std_range(row, k) for k in stats]
        line += [format_value(row.get(k)) for k in extra.values()]
        line.append(str(len(row["collapsed"])) if row.get("collapsed") else "-")
        line.append(str(row["diverged"]) if row.get("diverged") else "-")
        body.append(line)
    return markdown_table(header, body) if markdown else text_table(header, body)


def text_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """Right-aligned fixed-width columns under a header and a rule, no trailing newline."""
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in body]
    return "\n".join(lines)


def markdown_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table (numbers right-aligned), no trailing newline."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    lines += ["| " + " | ".join(line) + " |" for line in body]
    return "\n".join(lines)


def mean_std(row: dict, key: str, digits: int = 2) -> str:
    """``"61.23 ± 0.87"`` from ``row[key + "_mean"]`` and ``_std``; ``"-"`` for NaN."""
    mean, std = row[f"{key}_mean"], row[f"{key}_std"]
    return "-" if math.isnan(mean) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def mean_std_range(row: dict, key: str, digits: int = 2) -> str:
    """``"61.23 ± 0.87 [60.10, 62.00]"``: mean ± std and the min and max over seeds."""
    text = mean_std(row, key, digits)
    if text == "-":
        return text
    return f"{text} [{row[f'{key}_min']:.{digits}f}, {row[f'{key}_max']:.{digits}f}]"


def format_value(value) -> str:
    """A cell: ``-`` for None/NaN, floats to three significant digits, dicts as
    ``key=value`` pairs."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return " ".join(f"{k}={format_value(v)}" for k, v in value.items())
    return str(value)


def _stats(key: str, values: list[float]) -> dict[str, float]:
    if not values:
        return {f"{key}_{s}": math.nan for s in ("mean", "std", "min", "max")}
    v = np.asarray(values, dtype=np.float64)
    return {
        f"{key}_mean": float(v.mean()),
        f"{key}_std": float(v.std()),
        f"{key}_min": float(v.min()),
        f"{key}_max": float(v.max()),
    }


def _hashable(value):
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value
