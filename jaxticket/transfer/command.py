"""The ``jaxticket transfer`` command: flags from ``TransferConfig``, run, table, plot.

``jaxticket.cli`` builds the subparser with :func:`add_arguments` and calls
:func:`run_command` with the parsed arguments.
"""

from __future__ import annotations

import argparse
import sys
import time

from jaxticket.transfer.config import TransferConfig
from jaxticket.workflow.flags import add_run_flags, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per ``TransferConfig`` field, ``--out`` and ``--quiet``."""
    add_run_flags(parser, TransferConfig)


def run_command(args: argparse.Namespace) -> int:
    """Runs (or resumes) the experiment, prints the table, the run directory, the plot and
    the wall time; returns 0."""
    from jaxticket.transfer.plots import save_plots
    from jaxticket.transfer.report import format_table, summarize
    from jaxticket.transfer.run import run_transfer

    config = config_from_args(TransferConfig, args)
    start = time.time()
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    store, records = run_transfer(config, out_dir=args.out, show_progress=not args.quiet, log=log)
    print(format_table(summarize(records)))
    plot = save_plots(records, store.run_dir)
    print(f"\nrun directory: {store.run_dir}\nplot: {plot}")
    print(f"wall time: {time.time() - start:.1f} s")
    return 0
