"""The ``jaxticket supermask`` command: flags from ``SupermaskConfig``, run, table, plots.

``jaxticket.cli`` builds the subparser with :func:`add_arguments` (plus its
``--cpu-devices``) and calls :func:`run_command` with the parsed arguments.
"""

from __future__ import annotations

import argparse
import sys
import time

from jaxticket.supermask.config import SupermaskConfig
from jaxticket.workflow.flags import add_run_flags, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per ``SupermaskConfig`` field, ``--out`` and ``--quiet``."""
    add_run_flags(parser, SupermaskConfig)


def run_command(args: argparse.Namespace) -> int:
    """Runs (or resumes) the configured experiment, prints the table, the run directory,
    the plots and the wall time; returns the exit code (0)."""
    from jaxticket.supermask.plots import save_plots
    from jaxticket.supermask.report import format_table, summarize
    from jaxticket.supermask.run import run_supermask

    config = config_from_args(SupermaskConfig, args)
    start = time.time()
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    store, records = run_supermask(config, out_dir=args.out, show_progress=not args.quiet, log=log)
    print(format_table(summarize(records)))
    acc, over = save_plots(records, store.run_dir)
    print(f"\nrun directory: {store.run_dir}\nplots: {acc}, {over}")
    print(f"wall time: {time.time() - start:.1f} s")
    return 0


if __name__ == "__main__":  # python -m jaxticket.supermask.command ... (= jaxticket supermask)
    _parser = argparse.ArgumentParser(prog="jaxticket supermask", description=__doc__)
    add_arguments(_parser)
    sys.exit(run_command(_parser.parse_args()))
