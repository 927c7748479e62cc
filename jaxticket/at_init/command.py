"""The ``jaxticket at-init`` command: flags from ``AtInitConfig``, run, table.

``jaxticket.cli`` builds the subparser with :func:`add_arguments` (plus its
``--cpu-devices``) and calls :func:`run_command` with the parsed arguments.
"""

from __future__ import annotations

import argparse
import sys
import time

from jaxticket.at_init.config import AtInitConfig
from jaxticket.workflow.flags import add_run_flags, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per ``AtInitConfig`` field, ``--out`` and ``--quiet``."""
    add_run_flags(parser, AtInitConfig)


def run_command(args: argparse.Namespace) -> int:
    """Runs (or resumes) the configured experiment, prints its table (the mask and each
    control per sparsity, mean ± std over seeds) and the run directory; returns 0."""
    from jaxticket.at_init.run import run_at_init

    config = config_from_args(AtInitConfig, args)
    start = time.time()
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    store, records = run_at_init(config, out_dir=args.out, show_progress=not args.quiet, log=log)
    print(format_table(records))
    print(f"\nrun directory: {store.run_dir}")
    print(f"wall time: {time.time() - start:.1f} s")
    return 0


def format_table(records: list[dict]) -> str:
    """One row per (method, sparsity, variant): accuracies mean ± std [min, max] over
    seeds, the fraction of each layer kept, collapsed leaves and diverged runs."""
    from jaxticket.workflow.summary import format_summary, group_summary

    by = ("method", "sparsity", "variant")
    rows = group_summary(records, by=by)
    return format_summary(rows, by, extra={"layer remaining": "layer_remaining"})


def is_at_init_run(run_dir) -> bool:
    """Whether ``run_dir`` holds an at-init run (its ``config.json`` names an at-init
    method, its sparsities and controls); ``False`` for anything unreadable."""
    from jaxticket.at_init.methods import METHODS
    from jaxticket.workflow.store_results import stored_config

    config = stored_config(run_dir)
    keys = {"method", "sparsities", "controls", "score_batch"}
    return keys <= set(config) and config["method"] in METHODS


def report(run_dir) -> str:
    """The title and table of a (partly) finished at-init run directory.

    Raises:
      ValueError: the directory or its ``results.json`` is missing or malformed.
    """
    from jaxticket.workflow.store import RunStore

    results = RunStore.read_results(run_dir)
    config = results.get("config") or {}
    title = f"at-init run {run_dir}: {config.get('method')}, {config.get('model')} on " + str(
        config.get("dataset")
    )
    if not results["records"]:
        return title + "\n(no finished phase yet)"
    return title + "\n" + format_table(results["records"])
