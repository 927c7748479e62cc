"""The ``jaxticket soups`` command: flags from ``SoupConfig``, run, table, plots.

``jaxticket.cli`` builds the subparser with :func:`add_arguments` (plus its
``--cpu-devices``) and calls :func:`run_command` with the parsed arguments.
"""

from __future__ import annotations

import argparse
import sys
import time

from jaxticket.soups.config import SoupConfig
from jaxticket.workflow.flags import add_run_flags, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per ``SoupConfig`` field, ``--out`` and ``--quiet``."""
    add_run_flags(parser, SoupConfig)


def run_command(args: argparse.Namespace) -> int:
    """Runs (or resumes) the configured experiment, prints the table, the run directory,
    the plots and the wall time; returns the exit code (0)."""
    from jaxticket.soups.plots import save_plots
    from jaxticket.soups.report import format_table, summarize
    from jaxticket.soups.run import run_soups

    config = config_from_args(SoupConfig, args)
    start = time.time()
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    store, records = run_soups(config, out_dir=args.out, show_progress=not args.quiet, log=log)
    print(format_table(summarize(records)))
    path = save_plots(records, store.run_dir)
    print(f"\nrun directory: {store.run_dir}\nplot: {path}")
    print(f"wall time: {time.time() - start:.1f} s")
    return 0
