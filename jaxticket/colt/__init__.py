"""COLT, cyclic overlapping lottery tickets (``jaxticket colt``): split the training data
into segments, train a copy on each, prune each by magnitude, keep the weights alive in
all (the overlap), rewind and repeat; compared with IMP at equal sparsity in accuracy and
in training iterations.

* ``segments``: :func:`split_segments`, :func:`segment_indices` and :func:`overlap` (the
  intersection of masks stacked over copies);
* ``config``: ``ColtConfig`` (every field a CLI flag; the digest names the run directory);
* ``run``: ``run_colt`` on the workflow layer, one phase per cycle;
* ``report``: the per-cycle table (COLT against IMP: sparsity, accuracy, iterations);
* ``plots`` (loads matplotlib): accuracy against sparsity and against iterations.

Example::

    config = ColtConfig(model="mlp", segments=2, cycles=4, steps=1000)
    store, records = run_colt(config, out_dir="runs")
    print(format_table(summarize(records)))
"""

import importlib

from jaxticket.colt import config, report, run, segments
from jaxticket.colt.config import ColtConfig
from jaxticket.colt.run import COLT, ColtState, run_colt
from jaxticket.colt.segments import overlap, segment_indices, split_segments

__all__ = [
    "COLT",
    "ColtConfig",
    "ColtState",
    "config",
    "overlap",
    "plots",
    "report",
    "run",
    "run_colt",
    "segment_indices",
    "segments",
    "split_segments",
]


def __getattr__(name: str):
    # plots pulls in matplotlib (slow to import); load it when first asked for.
    if name == "plots":
        return importlib.import_module("jaxticket.colt.plots")
    raise AttributeError(f"module 'jaxticket.colt' has no attribute {name!r}")
