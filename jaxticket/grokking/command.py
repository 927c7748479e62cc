"""The ``jaxticket grokking`` command: flags from ``GrokkingConfig``, run, table, plots.

``jaxticket.cli`` builds the subparser with :func:`add_arguments` and calls
:func:`run_command` with the parsed arguments.
"""

from __future__ import annotations

import argparse
import sys
import time

from jaxticket.grokking.config import GrokkingConfig
from jaxticket.workflow.flags import add_run_flags, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per ``GrokkingConfig`` field, ``--out`` and ``--quiet``."""
    add_run_flags(parser, GrokkingConfig)


def run_command(args: argparse.Namespace) -> int:
    """Runs (or resumes) the experiment, prints the table (steps to the threshold per
    variant), the run directory, the plots and the wall time; returns 0."""
    from jaxticket.grokking.plots import save_plots
    from jaxticket.grokking.report import format_table, summarize
    from jaxticket.grokking.run import run_grokking

    config = config_from_args(GrokkingConfig, args)
    start = time.time()
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    store, records = run_grokking(config, out_dir=args.out, show_progress=not args.quiet, log=log)
    print(format_table(summarize(records)))
    test, train = save_plots(records, store.run_dir, config.threshold)
    print(f"\nrun directory: {store.run_dir}\nplots: {test}, {train}")
    print(f"wall time: {time.time() - start:.1f} s")
    return 0
