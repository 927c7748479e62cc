"""Tables of a lottery run: one row per pruning level, statistics over seeds.

Records follow the ``results.json`` contract of the lottery workflow: one dict per
(level, variant, seed) with ``remaining`` as a fraction and accuracies as fractions. Rows
report both in percent. Spreads are the population standard deviation over seeds
(``numpy.std``, ``ddof=0``), so a single seed gives 0 rather than NaN.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

CONTROLS = ("reinit", "random_prune", "shuffle")
VARIANTS = ("ticket", "dense", *CONTROLS)
REQUIRED_KEYS = (
    "level",
    "variant",
    "seed",
    "remaining",
    "test_accuracy_early",
    "test_accuracy_final",
    "early_stop_step",
)


def summarize(records: list[dict]) -> list[dict]:
    """Per-level statistics over seeds.

    The main variant of a level is ``"ticket"`` (``"dense"`` is used where a level has no
    ticket records). Control columns appear for every control present anywhere in the run;
    a level without that control (level 0, say) holds NaN there.

    Args:
      records: results records (see the module docstring).

    Returns:
      One dict per level, in level order, with keys ``level``, ``seeds`` (number of ticket
      seeds), ``remaining_pct`` (mean % of weights remaining), ``ticket_early_mean/std`` and
      ``ticket_final_mean/std`` (test accuracy in %), ``early_stop_step`` (mean iteration),
      and ``<control>_early_mean/std`` for each control present.
    """
    check_records(records)
    controls = [c for c in CONTROLS if any(r["variant"] == c for r in records)]
    rows = []
    for level in sorted({r["level"] for r in records}):
        main = main_records(records, level)
        row = {"level": level, "seeds": len(main)}
        row["remaining_pct"] = _mean([100.0 * r["remaining"] for r in main])
        for name, key in (("early", "test_accuracy_early"), ("final", "test_accuracy_final")):
            row[f"ticket_{name}_mean"], row[f"ticket_{name}_std"] = _stats(main, key)
        row["early_stop_step"] = _mean([r["early_stop_step"] for r in main])
        for c in controls:
            chosen = [r for r in records if r["level"] == level and r["variant"] == c]
            row[f"{c}_early_mean"], row[f"{c}_early_std"] = _stats(chosen, "test_accuracy_early")
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """A fixed-width plain-text table of ``summarize`` rows (accuracies as mean ± std, %).

    Args:
      rows: output of ``summarize``.

    Returns:
      The table, one line per level under a header and a rule, no trailing newline.
    """
    header, body = _cells(rows)
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in body]
    return "\n".join(lines)


def markdown_table(rows: list[dict]) -> str:
    """A GitHub-flavoured markdown table of ``summarize`` rows (numbers right-aligned).

    Args:
      rows: output of ``summarize``.

    Returns:
      The markdown table, no trailing newline.
    """
    header, body = _cells(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    lines += ["| " + " | ".join(line) + " |" for line in body]
    return "\n".join(lines)


def report(run_dir) -> str:
    """The summary table of a finished (or partly finished) run directory.

    Args:
      run_dir: a directory holding the workflow's ``results.json``.

    Returns:
      A title line (model, data set, seeds when the config names them) and the table.

    Raises:
      ValueError: the directory or its ``results.json`` is missing or malformed.
    """
    results = load_results(run_dir)
    config = results.get("config") or {}
    title = "lottery run " + str(Path(run_dir))
    if "model" in config and "dataset" in config:
        title += f": {config['model']} on {config['dataset']}"
    rows = summarize(results["records"])
    return title + "\n" + format_table(rows)


def load_results(run_dir) -> dict:
    """Reads and checks ``run_dir/results.json``.

    Args:
      run_dir: the run directory.

    Returns:
      The parsed ``{"config": ..., "records": [...]}`` dict.

    Raises:
      ValueError: no such directory, no ``results.json``, invalid JSON or records.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"run directory {str(run_dir)!r} does not exist or is not a directory")
    path = run_dir / "results.json"
    if not path.is_file():
        raise ValueError(f"{str(path)!r} not found: is {str(run_dir)!r} a lottery run directory?")
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{str(path)!r} is not valid JSON: {e}") from e
    if not isinstance(results, dict) or not isinstance(results.get("records"), list):
        raise ValueError(f"{str(path)!r}: expected an object with a 'records' list")
    check_records(results["records"])
    return results


def check_records(records: list[dict]) -> None:
    """Raises ValueError naming ``records[i].key`` for a missing key, a bad variant, a
    duplicate (level, variant, seed) or an empty list."""
    if not records:
        raise ValueError("records: expected at least one record, got none")
    seen = set()
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise ValueError(f"records[{i}]: expected a dict, got {type(r).__name__}")
        for key in REQUIRED_KEYS:
            if key not in r:
                raise ValueError(f"records[{i}].{key}: missing (required: {REQUIRED_KEYS})")
        if r["variant"] not in VARIANTS:
            raise ValueError(
                f"records[{i}].variant: expected one of {VARIANTS}, got {r['variant']!r}"
            )
        ident = (r["level"], r["variant"], r["seed"])
        if ident in seen:
            raise ValueError(f"records[{i}]: duplicate record for (level, variant, seed) {ident}")
        seen.add(ident)


def main_records(records: list[dict], level: int) -> list[dict]:
    """The records of a level's main variant: ``"ticket"``, else ``"dense"``."""
    for variant in ("ticket", "dense"):
        chosen = [r for r in records if r["level"] == level and r["variant"] == variant]
        if chosen:
            return chosen
    return []


def _stats(records: list[dict], key: str) -> tuple[float, float]:
    # Accuracies are stored as fractions; rows speak percent.
    values = np.asarray([100.0 * r[key] for r in records], dtype=np.float64)
    if values.size == 0:
        return math.nan, math.nan
    return float(values.mean()), float(values.std())


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def _cells(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    controls = [c for c in CONTROLS if rows and f"{c}_early_mean" in rows[0]]
    header = ["level", "remaining %", "seeds", "ticket early %", "ticket final %", "early-stop it"]
    header += [f"{c} early %" for c in controls]
    body = []
    for row in rows:
        line = [str(row["level"]), _pct(row["remaining_pct"]), str(row["seeds"])]
        line += [_pm(row, "ticket_early"), _pm(row, "ticket_final")]
        line.append(_num(row["early_stop_step"], 0))
        line += [_pm(row, f"{c}_early") for c in controls]
        body.append(line)
    return header, body


def _num(x: float, digits: int) -> str:
    return "-" if math.isnan(x) else f"{x:.{digits}f}"


def _pct(x: float) -> str:
    # Three significant digits read like the paper's axis: 100, 51.3, 3.6, 0.123.
    return "-" if math.isnan(x) else f"{x:.3g}"


def _pm(row: dict, name: str) -> str:
    mean, std = row[f"{name}_mean"], row[f"{name}_std"]
    return "-" if math.isnan(mean) else f"{mean:.2f} ± {std:.2f}"
