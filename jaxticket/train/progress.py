"""A progress bar for a compiled run, with no host callback inside the compiled program.

JAX never writes an executable that contains a host callback (``jax.debug.callback``) to
its persistent compilation cache, so a bar driven from inside the program would make
every run with a bar compile from scratch. Instead, :class:`ChunkedRun` cuts the run's
segment table into a few equal chunks (the last one padded with rows that do nothing)
and runs them with one compiled chunk program; the training state stays on the device
between calls. All chunks are dispatched at once (dispatch is asynchronous), then the
host waits for each chunk's tiny divergence flag in turn and moves the bar. The chunk
program is the scan body of the one-program run, so the results are bit-identical to a
run without a bar.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import numpy as np

try:  # a widget bar in notebooks that can draw one (tqdm.auto warns where ipywidgets is absent)
    import ipywidgets  # noqa: F401
    from tqdm.auto import tqdm
except ImportError:
    from tqdm import tqdm

from jaxticket.train.engine import Engine, TrainResult, padding

CHUNKS = 8  # the most calls (and bar updates) a run is cut into


def chunk_rows(rows: np.ndarray, steps_end: int, chunks: int = CHUNKS) -> list[np.ndarray]:
    """Cuts the segment table into at most ``chunks`` pieces of equal length.

    Args:
      rows: the engine's table (``int32[n, 5]``).
      steps_end: the run's last relative step (padding rows start there).
      chunks: the most pieces to cut.

    Returns:
      Consecutive pieces, all with the same number of rows; the last is padded with
      :func:`jaxticket.train.engine.padding` rows.
    """
    size = math.ceil(len(rows) / min(chunks, len(rows)))
    count = math.ceil(len(rows) / size)
    padded = np.concatenate([rows, padding(count * size - len(rows), steps_end)])
    return [padded[i * size : (i + 1) * size] for i in range(count)]


class ChunkedRun:
    """``fn(params, model_state, mask, data_key, dropout_key, data) -> TrainResult`` with a
    progress bar, from the engine's parts compiled by the caller (vmapped, jitted).

    Args:
      engine: the run's :class:`jaxticket.train.engine.Engine` (for its table).
      start, run, finish: the compiled ``engine.start``, ``engine.run``, ``engine.finish``.
      total: the bar's last step (``start_step + steps``).
      chunks: the most pieces to cut the table into.
    """

    def __init__(
        self,
        engine: Engine,
        start: Callable,
        run: Callable,
        finish: Callable,
        *,
        total: int,
        chunks: int = CHUNKS,
    ):
        steps_end = int(engine.rows[-1, 1] + engine.rows[-1, 2])
        self.pieces = chunk_rows(engine.rows, steps_end, chunks)
        size = len(self.pieces[0])
        last_real = [min((i + 1) * size, len(engine.rows)) - 1 for i in range(len(self.pieces))]
        self.ends = [engine.step_after[i] for i in last_real]
        self.begin = engine.step_after[0]
        self.start, self.run, self.finish = start, run, finish
        self.total = total

    def __call__(self, params, model_state, mask, data_key, dropout_key, data) -> TrainResult:
        carry = self.start(params, model_state, mask, data)
        records, flags = [], []
        for rows in self.pieces:
            carry, piece = self.run(carry, rows, mask, data_key, dropout_key, data)
            records.append(piece)
            flags.append(carry.diverged_step)
        result = self.finish(carry, *records)
        bar = tqdm(
            total=self.total, initial=self.begin, unit="step", leave=False, dynamic_ncols=True
        )
        try:
            for flag, end in zip(flags, self.ends, strict=True):
                jax.block_until_ready(flag)
                bar.update(end - bar.n)
        finally:
            bar.close()
        return result
