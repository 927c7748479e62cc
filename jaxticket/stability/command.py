"""The ``jaxticket stability`` command: flags from ``StabilityConfig``, run, tables, plots.

``jaxticket.cli`` builds the subparser with :func:`add_arguments` (plus its
``--cpu-devices``) and calls :func:`run_command` with the parsed arguments.
"""

from __future__ import annotations

import argparse
import sys
import time

from jaxticket.stability.config import StabilityConfig
from jaxticket.workflow.flags import add_run_flags, config_from_args

__all__ = ["add_arguments", "format_match", "format_table", "run_command"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per ``StabilityConfig`` field, ``--out`` and ``--quiet``."""
    add_run_flags(parser, StabilityConfig)


def run_command(args: argparse.Namespace) -> int:
    """Runs (or resumes) the analysis, prints the barrier table per rewind step (and the
    weight-matching table), the run directory, the plots and the wall time; returns 0."""
    from jaxticket.stability.plots import save_plots
    from jaxticket.stability.run import run_stability

    config = config_from_args(StabilityConfig, args)
    start = time.time()
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    store, records = run_stability(config, out_dir=args.out, show_progress=not args.quiet, log=log)
    print(format_table(records))
    if config.match:
        print("\n" + format_match(records))
    paths = save_plots(records, store.run_dir)
    print(f"\nrun directory: {store.run_dir}\nplots: {', '.join(str(p) for p in paths)}")
    print(f"wall time: {time.time() - start:.1f} s")
    return 0


def format_table(records: list[dict]) -> str:
    """One row per rewind step: the barrier (%) mean ± std [min, max] over pairs of copies
    (one pair per parent with two copies), how many pairs are stable (< 2 %), the end
    errors (%) mean ± std and the copies' final test accuracy (%)."""
    from jaxticket.stability.interpolate import summary
    from jaxticket.stability.plots import sweep_records

    by_k = sweep_records(records)
    if not by_k:
        return "(no finished rewind step yet)"
    bn = any(r.get("batchnorm_recomputed") for rows in by_k.values() for r in rows)
    head = f"{'k':>6}  {'variant':<7}  {'pairs':>5}  {'barrier %':<28}  {'stable':>6}  "
    head += f"{'end error %':<14}  copy test acc %"
    lines = [head]
    for k, rows in by_k.items():
        s = summary([r["barrier"] for r in rows])
        ends = [100 * e for r in rows for e in r["end_errors"]]
        accs = [100 * a for r in rows for a in r["copy_test_accuracy"]]
        barrier = f"{100 * s.mean:.2f} ± {100 * s.std:.2f} [{100 * s.min:.2f}, {100 * s.max:.2f}]"
        lines.append(
            f"{k:>6}  {rows[0]['variant']:<7}  {s.count:>5}  {barrier:<28}  "
            f"{f'{s.stable}/{s.count}':>6}  {_mean_std(ends):<14}  {_mean_std(accs)}"
        )
    note = (
        "BatchNorm statistics recomputed on training data at every α"
        if bn
        else ("no BatchNorm statistics (none recomputed)")
    )
    return "\n".join(lines) + f"\nstable: barrier < 2 % (pairs of copies of one parent); {note}"


def format_match(records: list[dict]) -> str:
    """The weight-matching barriers (%): each pair of different inits before and after
    alignment, then mean ± std [min, max] of each."""
    from jaxticket.stability.interpolate import summary

    rows = [r for r in records if r.get("variant") == "match"]
    if not rows:
        return "(weight matching not finished)"
    lines = ["weight matching (different inits): barrier % before -> after alignment"]
    for r in rows:
        lines.append(
            f"  seeds {r['seed']}-{r['other_seed']}: {100 * r['barrier_before']:.2f} -> "
            f"{100 * r['barrier_after']:.2f}"
        )
    for key in ("barrier_before", "barrier_after"):
        s = summary([r[key] for r in rows])
        lines.append(
            f"  {key.removeprefix('barrier_'):<6}: {100 * s.mean:.2f} ± {100 * s.std:.2f} "
            f"[{100 * s.min:.2f}, {100 * s.max:.2f}], stable {s.stable}/{s.count}"
        )
    return "\n".join(lines)


def _mean_std(values: list[float]) -> str:
    import numpy as np

    v = np.asarray(values, dtype=np.float64)
    return f"{v.mean():.2f} ± {v.std():.2f}"
