"""The final results of a run directory: ``results.json`` and ``results.csv``."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from jaxticket.workflow.store_files import dumps, read_json, write_atomic


def write_results(run_dir: str | os.PathLike, config: dict, records: list[dict]) -> None:
    """Writes ``results.json`` ({"config", "records"}) and ``results.csv``, atomically.

    The CSV has one row per record, without ``history``, and ``layer_remaining`` spread
    over ``remaining:<path>`` columns.

    Args:
      run_dir: the run directory (it must exist).
      config: the run's config dict.
      records: the records of every level.

    Raises:
      StorageError: a file could not be written (the previous one is kept whole).
    """
    write_atomic(Path(run_dir) / "results.json", dumps({"config": config, "records": records}))
    rows = []
    for record in records:
        row = {k: v for k, v in record.items() if k not in ("history", "layer_remaining")}
        for path, value in (record.get("layer_remaining") or {}).items():
            row[f"remaining:{path}"] = value
        rows.append({k: dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()})
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(Path(run_dir) / "results.csv", buffer.getvalue())


def read_results(run_dir: str | os.PathLike) -> dict:
    """Reads ``run_dir/results.json``.

    Args:
      run_dir: a run directory.

    Returns:
      ``{"config": dict, "records": list of dicts}``.

    Raises:
      ValueError: the directory or file is missing, not UTF-8 JSON, or lacks those keys.
      StorageError: the file exists but cannot be read.
    """
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise ValueError(f"read_results: {path} does not exist")
    results = read_json(path, "read_results")
    if not isinstance(results, dict) or not isinstance(results.get("records"), list):
        raise ValueError(f"read_results: {path} needs a 'records' list")
    if not isinstance(results.get("config"), dict):
        raise ValueError(f"read_results: {path} needs a 'config' dict")
    for i, record in enumerate(results["records"]):
        if not isinstance(record, dict):
            raise ValueError(
                f"read_results: {path}: records[{i}] must be a dict, got {type(record).__name__}"
            )
    return results


def stored_config(run_dir: str | os.PathLike) -> dict:
    """The config a run directory's ``config.json`` records (its ``"config"`` entry), or
    ``{}`` when the file is missing, unreadable or malformed: what ``jaxticket report``
    reads to tell the kinds of runs apart."""
    import json

    try:
        stored = json.loads((Path(run_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    config = stored.get("config") if isinstance(stored, dict) else None
    return config if isinstance(config, dict) else {}
