"""A tqdm progress bar driven from inside jitted code at evaluation points.

The jitted engine calls :func:`report_progress` through ``jax.debug.callback``; it
forwards to whichever bar is open, so a compiled program can be reused across runs.
"""

from __future__ import annotations

import contextlib

import numpy as np
from tqdm.auto import tqdm

_active: list[tqdm] = []


def report_progress(step) -> None:
    """Moves the open bar to ``step`` (under vmap every seed reports; take the largest)."""
    if not _active:
        return
    bar = _active[-1]
    step = int(np.max(np.asarray(step)))
    if step > bar.n:
        bar.update(step - bar.n)


@contextlib.contextmanager
def progress_bar(total: int, *, enabled: bool):
    """Opens a bar over ``total`` steps for the duration of the block (no-op if disabled)."""
    if not enabled:
        yield None
        return
    bar = tqdm(total=total, unit="step", leave=False, dynamic_ncols=True)
    _active.append(bar)
    try:
        yield bar
    finally:
        _active.remove(bar)
        bar.close()
