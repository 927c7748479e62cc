"""Scratch training against fine-tuning (``jaxticket scratch``), the sanity check of
*Rethinking the Value of Network Pruning* (Liu et al. 2019): does a pruned network need
its inherited weights, or only its architecture?

* ``config``: ``ScratchConfig`` (every field a CLI flag; the digest names the run
  directory) and ``scratch_b_steps``, Scratch-B's step budget;
* ``run``: ``run_scratch`` on the workflow layer: phase 0 the dense run (the lottery
  workflow's level 0), then one phase per target sparsity training ``finetune``,
  ``scratch_e`` and ``scratch_b``;
* ``command``: the CLI subcommand and its summary table.

Example::

    config = ScratchConfig(model="lenet_300_100", sparsities=(0.9, 0.98))
    store, records = run_scratch(config, out_dir="runs")
"""

from jaxticket.scratch.config import VARIANTS, ScratchConfig, scratch_b_steps
from jaxticket.scratch.run import SCRATCH, ScratchState, run_scratch

__all__ = ["SCRATCH", "VARIANTS", "ScratchConfig", "ScratchState", "run_scratch", "scratch_b_steps"]
