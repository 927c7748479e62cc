"""The ``jaxticket scratch`` command: flags from ``ScratchConfig``, run, summary table.

``jaxticket.cli`` builds the subparser with :func:`add_parser` (then adds its
``--cpu-devices``) and calls :func:`run_command` with the parsed arguments. The table
groups the records by variant and target sparsity (accuracies mean ± std [min, max] over
seeds); the run directory gets it as ``summary.md`` beside results.json/csv.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from jaxticket.scratch.config import ScratchConfig
from jaxticket.workflow.flags import add_run_flags, config_from_args
from jaxticket.workflow.multiprocess import is_primary
from jaxticket.workflow.store import RunStore
from jaxticket.workflow.store_results import stored_config
from jaxticket.workflow.summary import format_summary, group_summary

BY = ("variant", "sparsity")
STATS = {"test_accuracy_early": 100.0, "test_accuracy_final": 100.0, "remaining": 100.0}
EXTRA = {"steps": "steps", "remaining %": "remaining_mean"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per ``ScratchConfig`` field, ``--out`` and ``--quiet``."""
    add_run_flags(parser, ScratchConfig)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """The ``scratch`` subparser (its flags from :func:`add_arguments`; ``func`` is
    :func:`run_command`), returned so the caller can add more flags."""
    parser = subparsers.add_parser(
        "scratch",
        help="scratch training of pruned architectures against fine-tuning (Scratch-E/B)",
        description="Trains the dense network, prunes it by magnitude to each target "
        "sparsity, then fine-tunes the pruned weights and trains the pruned architecture "
        "from a fresh init for the same steps (Scratch-E) and the same compute "
        "(Scratch-B); seeds vmapped; resumable (rerunning loads finished sparsities).",
    )
    add_arguments(parser)
    parser.set_defaults(func=run_command)
    return parser


def summarize(records: list[dict]) -> list[dict]:
    """``group_summary`` rows by (variant, sparsity), with ``steps``: the steps trained
    (``"a/b"`` when the group's runs differ)."""
    rows = group_summary(records, by=BY, stats=STATS)
    for row in rows:
        steps = sorted(
            {
                r["steps_trained"]
                for r in records
                if (r["variant"], r["sparsity"]) == tuple(row[k] for k in BY)
            }
        )
        row["steps"] = "/".join(map(str, steps))
    return rows


def format_table(rows: list[dict], *, markdown: bool = False) -> str:
    """The table of :func:`summarize` rows: text, or GitHub markdown."""
    return format_summary(
        rows,
        BY,
        stats=("test_accuracy_early", "test_accuracy_final"),
        extra=EXTRA,
        markdown=markdown,
    )


def run_command(args: argparse.Namespace) -> int:
    """Runs (or resumes) the configured experiment, prints the table, the run directory
    and the wall time, writes ``summary.md`` into the run directory; returns 0."""
    from jaxticket.scratch.run import run_scratch

    config = config_from_args(ScratchConfig, args)
    start = time.time()
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    store, records = run_scratch(config, out_dir=args.out, show_progress=not args.quiet, log=log)
    rows = summarize(records)
    print(format_table(rows))
    table = store.run_dir / "summary.md"
    if is_primary():  # one writer in a multi-process job
        table.write_text(format_table(rows, markdown=True) + "\n", encoding="utf-8")
    print(f"\nrun directory: {store.run_dir}\ntable: {table}")
    print(f"wall time: {time.time() - start:.1f} s")
    return 0


def is_scratch_run(run_dir) -> bool:
    """Whether ``run_dir`` holds a scratch run (its ``config.json`` names the variants,
    ``scratch_b_cap`` and ``finetune_steps``); ``False`` for anything unreadable."""
    return {"variants", "scratch_b_cap", "finetune_steps"} <= set(stored_config(run_dir))


def report(run_dir) -> str:
    """The title and table of a (partly) finished scratch run, for ``jaxticket report``.

    Raises:
      ValueError: the directory or its ``results.json`` is missing or malformed.
    """
    results = RunStore.read_results(run_dir)
    config = results.get("config") or {}
    title = f"scratch run {Path(run_dir)}"
    if {"model", "dataset", "steps"} <= set(config):
        title += f": {config['model']} on {config['dataset']}, {config['steps']} steps"
    records = results["records"]
    if not records:
        return title + "\n(no finished phase yet)"
    missing = [k for k in ("variant", "sparsity", "steps_trained") if k not in records[0]]
    if missing:
        raise ValueError(f"{Path(run_dir) / 'results.json'}: records lack {missing}")
    return title + "\n" + format_table(summarize(records))
