"""The ``jaxticket at-init`` command: flags from ``AtInitConfig``, run, table.

``jaxticket.cli`` builds the subparser with :func:`add_arguments` (plus its
``--cpu-devices``) and calls :func:`run_command` with the parsed arguments.
"""

from __future__ import annotations

import argparse
import sys
import time

from jaxticket.at_init.config import AtInitConfig
from jaxticket.workflow.flags import add_config_flags, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per ``AtInitConfig`` field, ``--out`` and ``--quiet``."""
    add_config_flags(parser, AtInitConfig)
    parser.add_argument(
        "--out", default="runs", help="folder holding run directories (default: runs)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars or log lines")


def run_command(args: argparse.Namespace) -> int:
    """Runs (or resumes) the configured experiment, prints its table (the mask and each
    control per sparsity, mean ± std over seeds) and the run directory; returns 0."""
    from jaxticket.at_init.run import run_at_init
    from jaxticket.workflow.summary import format_summary, group_summary

    config = config_from_args(AtInitConfig, args)
    start = time.time()
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    store, records = run_at_init(config, out_dir=args.out, show_progress=not args.quiet, log=log)
    by = ("method", "sparsity", "variant")
    rows = group_summary(records, by=by)
    print(format_summary(rows, by, extra={"layer remaining": "layer_remaining"}))
    print(f"\nrun directory: {store.run_dir}")
    print(f"wall time: {time.time() - start:.1f} s")
    return 0
