"""Sparse training as a resumable workflow: one phase per target sparsity, seeds vmapped.

Each phase draws the method's starting mask for every seed (``method.initial_mask`` with
the seed's mask key, checked by ``method.check_start``), then trains all seeds in one
``train_seeds`` program with the method's ``MaskUpdate`` (spread over the devices like the
lottery workflow's levels) and keeps the final params and the final mask (read from the
optimizer state) as the phase's checkpoint, so later analyses (mask overlap, say) can read
them from the run directory. Keys derive from ``config.seed`` as in the lottery workflow:
init, data and mask streams are separate, and every phase uses the same keys (the
sparsities of a run differ in their target only).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxticket.lottery.optimizer import make_optimizer
from jaxticket.lottery.state import stack_seeds
from jaxticket.masks import dense_mask
from jaxticket.optim import get_mask
from jaxticket.sparse_train.config import SparseTrainConfig, build_method
from jaxticket.train import train_seeds
from jaxticket.train.runner import init_seeds
from jaxticket.workflow.records import Record, seed_records
from jaxticket.workflow.run import Workflow, run_workflow
from jaxticket.workflow.setup import model_and_data
from jaxticket.workflow.store import RunStore, flatten_tree, unflatten_into
from jaxticket.workflow.training import resolve_devices, seed_keys, train_on_devices

__all__ = ["SPARSE_TRAIN", "PhaseState", "SparseTrainer", "run_sparse_training"]


class PhaseState(NamedTuple):
    """What a finished phase keeps, each leaf stacked over seeds (host arrays).

    Attributes:
      params: the trained params (pruned entries exactly 0).
      mask: the mask at the end of training (``None`` leaves are not prunable).
    """

    params: Any
    mask: Any


def run_sparse_training(
    config: SparseTrainConfig,
    *,
    out_dir: str = "runs",
    show_progress: bool = False,
    log=None,
    devices=None,
) -> tuple[RunStore, list[Record]]:
    """Runs (or resumes) the sparse-training experiment ``config`` under ``out_dir``.

    Args:
      config: the experiment.
      out_dir: folder holding run directories; this run's is
        ``sparse-<method>-<model>-<dataset>-<digest>``.
      show_progress: progress bars.
      log: called with one line per event (run directory, each phase loaded or trained).
      devices: the devices the seeds are spread over (default: every device of JAX's
        default backend); the count names the run directory, as for the lottery workflow.

    Returns:
      The run's store and the records, one per (target sparsity, seed), in phase order:
      ``method``, ``sparsity`` (the target), ``phase``, ``seed``, the accuracies,
      ``final_sparsity``, ``pruned``/``prunable`` (counts of the prunable weights at the
      end), ``layer_remaining``, ``mask_updates`` (updates run), ``grown`` (weights
      regrown over all updates), ``collapsed``, ``diverged`` and ``history`` (with
      ``"sparsity"`` at every evaluation).

    Raises:
      ConfigError: the config does not fit the model or the data (before anything trains).

    Warns:
      LayerCollapseWarning, DivergenceWarning: a phase left a layer without weights, or a
        run's loss or weights became non-finite.
    """
    return run_workflow(
        SPARSE_TRAIN,
        config,
        out_dir=out_dir,
        show_progress=show_progress,
        log=log,
        devices=devices,
    )


class SparseTrainer:
    """The ``PhaseRunner`` of the sparse-training workflow: data, model, keys, devices."""

    def __init__(self, config: SparseTrainConfig, devices=None):
        self.config = c = config
        self.devices = resolve_devices(devices, "run_sparse_training")
        self.model, self.template, _, self.data = model_and_data(c, hidden=c.hidden)
        # Key streams of config.seed, as in the lottery workflow: 0 inits, 1 data order,
        # 2 the starting masks.
        self.init_keys, self.data_keys, self.mask_keys = (
            seed_keys(c.seed, stream, c.seeds) for stream in range(3)
        )
        self.init_batch = init_seeds(self.model)

    def run_phase(
        self, phase: int, state: PhaseState | None, show_progress: bool
    ) -> tuple[PhaseState, list[Record]]:
        """Trains every seed at the phase's target sparsity (``state`` is not used: the
        phases are independent runs from the same inits)."""
        del state
        c = self.config
        target = c.targets[phase]
        method = build_method(c, target)
        params, model_state = jax.device_get(self.init_batch(self.init_keys))
        mask = update = None
        if method is not None:
            mask = jax.device_get(initial_masks(method)(params, self.mask_keys))
            for s in range(c.seeds):
                method.check_start(jax.tree.map(lambda x, s=s: x[s], mask))
            update = method.mask_update(c.steps)
        # The workflow warns naming the phase and seed (the engine would name positions).
        result = train_on_devices(
            train_seeds,
            self.model,
            self.data,
            make_optimizer(c),
            self.devices,
            init_keys=self.init_keys,
            data_keys=self.data_keys,
            steps=c.steps,
            batch_size=c.batch_size,
            eval_every=c.eval_every,
            params=params,
            model_state=model_state,
            mask=mask,
            mask_per_seed=mask is not None,
            mask_update=update,
            show_progress=show_progress,
        )
        if method is None:  # dense: the engine trains without a mask
            final = stack_seeds(dense_mask(self.template), c.seeds)
        else:
            final = jax.tree.map(np.asarray, get_mask(result.opt_state))
        records = phase_records(result, final, c, phase, target)
        return PhaseState(jax.tree.map(np.asarray, result.params), final), records

    def pack(self, state: PhaseState) -> dict[str, Any]:
        """The state as flat named arrays (``"params/<leaf>"``, ``"mask/<leaf>"``)."""
        return {**flatten_tree(state.params, "params"), **flatten_tree(state.mask, "mask")}

    def unpack(self, flat: dict[str, Any]) -> PhaseState:
        """Inverse of :meth:`pack` (NumPy leaves)."""
        params = unflatten_into(self.template, flat, "params")
        mask = unflatten_into(dense_mask(self.template), flat, "mask")
        return PhaseState(jax.tree.map(np.asarray, params), jax.tree.map(np.asarray, mask))


def phase_records(result, mask, c: SparseTrainConfig, phase: int, target: float) -> list[Record]:
    """The records of one phase's stacked result (host arrays) and final ``mask``."""
    records = seed_records(result, mask, c.seeds, method=c.method, sparsity=target, phase=phase)
    leaves = [np.asarray(m) for m in jax.tree.leaves(mask)]
    prunable = sum(int(np.prod(m.shape[1:])) for m in leaves)
    updates = result.mask_updates
    for s, r in enumerate(records):
        pruned = prunable - sum(int(np.count_nonzero(m[s])) for m in leaves)
        r["final_sparsity"] = pruned / prunable
        r["pruned"], r["prunable"] = pruned, prunable
        r["mask_updates"] = r.get("mask_updates", 0)
        r["grown"] = 0 if updates is None else int(np.sum(np.asarray(updates["grown"])[s]))
        if "sparsity" not in r["history"]:  # a fixed mask: its sparsity at every evaluation
            r["history"]["sparsity"] = [r["final_sparsity"]] * len(r["history"]["step"])
    return records


@functools.lru_cache(maxsize=32)
def initial_masks(method):
    """``(params, keys) -> masks`` stacked over seeds: ``method.initial_mask`` jitted and
    vmapped, cached by the method's value (the methods are frozen dataclasses)."""
    return jax.jit(jax.vmap(method.initial_mask))


def _phases(c: SparseTrainConfig) -> range:
    return range(len(c.targets))


# The workflow: run directory sparse-<method>-<model>-<dataset>-<digest>, one phase per
# target sparsity (a record's ``phase`` names it in warnings).
SPARSE_TRAIN = Workflow(
    name=lambda c: f"sparse-{c.method}-{c.model}-{c.dataset}",
    phases=_phases,
    setup=SparseTrainer,
    group_key="phase",
)
