"""Tables of a lottery run: one row per pruning level, statistics over seeds.

Records follow the ``results.json`` contract of the lottery workflow: one dict per
(level, variant, seed) with ``remaining`` as a fraction and accuracies as fractions. Rows
report both in percent. Spreads are the population standard deviation over seeds
(``numpy.std``, ``ddof=0``), so a single seed gives 0 rather than NaN.

What went wrong is shown, never averaged away: a record's ``collapsed`` (prunable leaves
left with no weight; derived from ``layer_remaining`` for records written before it
existed) and ``diverged`` (non-finite loss or weights) become the table's ``collapsed``
(leaves) and ``diverged`` (runs) columns.
"""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path

import numpy as np

from jaxticket.workflow.summary import markdown_table as workflow_markdown
from jaxticket.workflow.summary import mean_std, text_table

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
      ``<control>_early_mean/std`` for each control present, ``collapsed`` (sorted leaf
      paths collapsed in any run of the level) and ``diverged`` (how many of the level's
      runs, all variants, diverged).
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
        level_records = [r for r in records if r["level"] == level]
        row["collapsed"] = sorted({p for r in level_records for p in record_collapsed(r)})
        row["diverged"] = sum(bool(r.get("diverged")) for r in level_records)
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """A fixed-width plain-text table of ``summarize`` rows (accuracies as mean ± std, %).

    The last two columns count the level's collapsed leaves and diverged runs ("-": none).

    Args:
      rows: output of ``summarize``.

    Returns:
      The table, one line per level under a header and a rule, no trailing newline.
    """
    return text_table(*_cells(rows))


def markdown_table(rows: list[dict]) -> str:
    """A GitHub-flavoured markdown table of ``summarize`` rows (numbers right-aligned).

    Args:
      rows: output of ``summarize``.

    Returns:
      The markdown table, no trailing newline.
    """
    return workflow_markdown(*_cells(rows))


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
        results = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{str(path)!r} is not UTF-8 text ({e.reason} at byte {e.start})") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"{str(path)!r} is not valid JSON: {e}") from e
    except RecursionError:
        raise ValueError(f"{str(path)!r} is nested too deeply to be lottery results") from None
    if not isinstance(results, dict) or not isinstance(results.get("records"), list):
        raise ValueError(f"{str(path)!r}: expected an object with a 'records' list")
    check_records(results["records"])
    return results


def check_records(records: list[dict]) -> None:
    """Raises ValueError naming ``records[i].key`` for a missing or mistyped key, a value
    out of range, a bad variant, a duplicate (level, variant, seed) or an empty list."""
    if not isinstance(records, list):
        raise ValueError(f"records: expected a list of records, got {type(records).__name__}")
    if not records:
        raise ValueError("records: expected at least one record, got none")
    seen = set()
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise ValueError(f"records[{i}]: expected a dict, got {type(r).__name__}")
        for key in REQUIRED_KEYS:
            if key not in r:
                raise ValueError(f"records[{i}].{key}: missing (required: {REQUIRED_KEYS})")
        for key, check, expected in _CHECKS:
            if key in r and not check(r[key]):
                raise ValueError(f"records[{i}].{key}: expected {expected}, got {r[key]!r}")
        if r["variant"] not in VARIANTS:
            raise ValueError(
                f"records[{i}].variant: expected one of {VARIANTS}, got {r['variant']!r}"
            )
        ident = (r["level"], r["variant"], r["seed"])
        if ident in seen:
            raise ValueError(f"records[{i}]: duplicate record for (level, variant, seed) {ident}")
        seen.add(ident)


def record_collapsed(record: dict) -> list[str]:
    """The record's collapsed leaves: its ``collapsed`` list, else the leaves of its
    ``layer_remaining`` at 0 (records written before ``collapsed`` existed)."""
    if "collapsed" in record:
        return list(record["collapsed"])
    return [p for p, v in (record.get("layer_remaining") or {}).items() if v == 0]


def _is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _is_fraction(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and 0.0 <= x <= 1.0


def _is_accuracy(x) -> bool:  # a diverged run may have stored NaN
    return _is_fraction(x) or (isinstance(x, float) and math.isnan(x))


def _is_paths(x) -> bool:
    return isinstance(x, list) and all(isinstance(p, str) for p in x)


def _is_fractions(x) -> bool:
    return isinstance(x, dict) and all(map(_is_fraction, x.values()))


# (key, check, what was expected): the value types a table needs.
_CHECKS = (
    ("level", lambda x: _is_int(x) and x >= 0, "an int >= 0"),
    ("seed", lambda x: _is_int(x) and x >= 0, "an int >= 0"),
    ("variant", lambda x: isinstance(x, str), "a str"),
    ("remaining", _is_fraction, "a number in [0, 1]"),
    ("test_accuracy_early", _is_accuracy, "a number in [0, 1]"),
    ("test_accuracy_final", _is_accuracy, "a number in [0, 1]"),
    ("early_stop_step", lambda x: _is_int(x) and x >= 0, "an int >= 0"),
    ("collapsed", _is_paths, "a list of leaf paths"),
    ("diverged", lambda x: isinstance(x, bool), "true or false"),
    ("layer_remaining", _is_fractions, "a dict of fractions in [0, 1]"),
)


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
    header += ["collapsed", "diverged"]
    body = []
    for row in rows:
        line = [str(row["level"]), _pct(row["remaining_pct"]), str(row["seeds"])]
        line += [mean_std(row, "ticket_early"), mean_std(row, "ticket_final")]
        line.append(_num(row["early_stop_step"], 0))
        line += [mean_std(row, f"{c}_early") for c in controls]
        # Leaves with no weight left, and runs whose loss or weights went non-finite.
        line.append(str(len(row.get("collapsed") or ())) if row.get("collapsed") else "-")
        line.append(str(row["diverged"]) if row.get("diverged") else "-")
        body.append(line)
    return header, body


def _num(x: float, digits: int) -> str:
    return "-" if math.isnan(x) else f"{x:.{digits}f}"


def _pct(x: float) -> str:
    # Three significant digits read like the paper's axis: 100, 51.3, 3.6, 0.123.
    return "-" if math.isnan(x) else f"{x:.3g}"
