"""The ``jaxticket compare`` command: flags from ``CompareConfig``, run, tables, plots.

``jaxticket.cli`` builds the subparser with :func:`add_arguments` (plus its
``--cpu-devices``) and calls :func:`run_command` with the parsed arguments.
"""

from __future__ import annotations

import argparse
import sys
import time

from jaxticket.compare.config import CompareConfig
from jaxticket.workflow.flags import add_run_flags, config_from_args
from jaxticket.workflow.multiprocess import is_primary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per ``CompareConfig`` field, ``--out`` and ``--quiet``."""
    add_run_flags(parser, CompareConfig)


def run_command(args: argparse.Namespace) -> int:
    """Runs (or resumes) the comparison, prints its tables, writes them (``table.md``) and
    the plots into the comparison's directory; returns the exit code (0)."""
    from jaxticket.compare.plots import save_plots
    from jaxticket.compare.report import control_table, format_table, summarize
    from jaxticket.compare.run import run_compare

    config = config_from_args(CompareConfig, args)
    start = time.time()
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    directory, records = run_compare(
        config, out_dir=args.out, show_progress=not args.quiet, log=log
    )
    rows = summarize(records)
    print(format_table(rows))
    print("\nmethod minus control, early-stop test accuracy (✓: more than the seed spread)")
    print(control_table(rows))
    write_tables(rows, directory)
    acc, dens = save_plots(records, directory)
    print(f"\ncomparison directory: {directory}\nplots: {acc}, {dens}")
    print(f"wall time: {time.time() - start:.1f} s")
    return 0


def write_tables(rows: list[dict], directory) -> None:
    """``table.md``: the accuracy table and the control table, in markdown."""
    from pathlib import Path

    from jaxticket.compare.report import control_table, format_table

    text = (
        "# Comparison\n\n"
        + format_table(rows, markdown=True)
        + "\n\n## Method minus control (early-stop test accuracy, percentage points; "
        "✓ more than the seed spread)\n\n" + control_table(rows, markdown=True) + "\n"
    )
    if is_primary():  # one writer in a multi-process job
        (Path(directory) / "table.md").write_text(text, encoding="utf-8")
