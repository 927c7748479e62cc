"""Pruning at initialization as a resumable workflow: one phase per target sparsity.

Each phase draws every seed's mask from its init with the method (one vmapped program,
the seed's mask key), builds the sanity controls beside it and trains every run of the
phase (the mask, then each control, each over every seed) in ONE ``train_seeds`` program
with the same data order. The controls (Frankle et al. 2021):

* ``shuffle``: the mask with its entries permuted within each layer (same per-layer counts,
  the original init) — if the mask beats it, the positions matter;
* ``reinit``: the same mask on a fresh init;
* ``invert``: the method keeping its LOWEST-scoring weights (score-based methods).

Key streams of ``config.seed``: 0 inits, 1 data order, 2 the masks (SNIP/GraSP's batch,
random masks), 3 the controls (shuffle, then the fresh inits). Every phase uses the same
keys: the sparsities of a run differ in their target only. A phase keeps the masks of
every run and the trained params of the method's own runs (``PhaseState``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxticket.at_init.config import AtInitConfig, build_method
from jaxticket.at_init.sanity import layerwise_shuffle
from jaxticket.lottery.optimizer import make_optimizer
from jaxticket.lottery.state import concat, seed_slice
from jaxticket.masks import dense_mask
from jaxticket.train import train_seeds
from jaxticket.train.runner import init_seeds
from jaxticket.workflow.config import ConfigError
from jaxticket.workflow.records import Record, seed_records
from jaxticket.workflow.run import Workflow, run_workflow
from jaxticket.workflow.setup import model_and_data
from jaxticket.workflow.store import RunStore, flatten_tree, unflatten_into
from jaxticket.workflow.training import resolve_devices, seed_keys, train_on_devices

__all__ = ["AT_INIT", "AtInitPhase", "AtInitTrainer", "run_at_init"]


class AtInitPhase(NamedTuple):
    """What a finished phase keeps (host arrays).

    Attributes:
      params: the method's trained params, stacked over seeds.
      masks: the mask of every run, stacked over runs in ``AtInitConfig`` order: the
        method's seeds, then each control's (``variants``).
    """

    params: Any
    masks: Any


def run_at_init(
    config: AtInitConfig,
    *,
    out_dir: str = "runs",
    show_progress: bool = False,
    log=None,
    devices=None,
) -> tuple[RunStore, list[Record]]:
    """Runs (or resumes) the at-init experiment ``config`` under ``out_dir``.

    Args:
      config: the experiment.
      out_dir: folder holding run directories; this run's is
        ``at-init-<method>-<model>-<dataset>-<digest>``.
      show_progress: progress bars.
      log: called with one line per event (run directory, each phase loaded or trained).
      devices: the devices the runs are spread over (default: every device of JAX's default
        backend).

    Returns:
      The run's store and the records, one per (sparsity, variant, seed) in phase order:
      ``method``, ``sparsity`` (the target), ``phase``, ``variant`` (``"mask"`` for the
      method's own runs, else the control), ``seed``, the accuracies, ``remaining`` and
      ``layer_remaining`` (fraction of each prunable leaf kept), ``collapsed``,
      ``diverged`` and ``history``.

    Raises:
      ConfigError: the config does not fit the model or the data (before anything trains).

    Warns:
      LayerCollapseWarning, DivergenceWarning: a run left a layer without weights, or its
        loss or weights became non-finite.
    """
    return run_workflow(
        AT_INIT, config, out_dir=out_dir, show_progress=show_progress, log=log, devices=devices
    )


def variants(c: AtInitConfig) -> tuple[str, ...]:
    """What trains in each phase, in batch order: ``"mask"``, then each control."""
    return ("mask", *c.controls)


class AtInitTrainer:
    """The ``PhaseRunner`` of the at-init workflow: data, model, keys, devices."""

    def __init__(self, config: AtInitConfig, devices=None):
        self.config = c = config
        self.devices = resolve_devices(devices, "run_at_init")
        self.model, self.template, _, self.data = model_and_data(c)
        if c.method in ("snip", "grasp") and c.score_batch > int(self.data.y_train.shape[0]):
            raise ConfigError(
                "score_batch",
                f"score_batch must be <= {int(self.data.y_train.shape[0])} (the training "
                f"examples left after val_size={c.val_size}), got {c.score_batch}",
            )
        self.init_keys, self.data_keys, self.mask_keys, control = (
            seed_keys(c.seed, stream, c.seeds) for stream in range(4)
        )
        self.shuffle_keys, self.reinit_keys = jax.vmap(jax.random.split, out_axes=1)(control)
        self.init_batch = init_seeds(self.model)

    def run_phase(
        self, phase: int, state: AtInitPhase | None, show_progress: bool
    ) -> tuple[AtInitPhase, list[Record]]:
        """Draws the masks of the phase's sparsity and trains the mask and its controls
        (``state`` is not used: the phases are independent)."""
        del state
        c = self.config
        target = c.sparsities[phase]
        params, model_state = jax.device_get(self.init_batch(self.init_keys))
        mask = self._masks(build_method(c), params, model_state, target)
        starts = {"mask": (params, model_state, mask)}
        if "shuffle" in c.controls:
            starts["shuffle"] = (params, model_state, layerwise_shuffle(self.shuffle_keys, mask))
        if "reinit" in c.controls:
            fresh, fresh_state = jax.device_get(self.init_batch(self.reinit_keys))
            starts["reinit"] = (fresh, fresh_state, mask)
        if "invert" in c.controls:
            inverted = build_method(c, inverted=True)
            starts["invert"] = (
                params,
                model_state,
                self._masks(inverted, params, model_state, target),
            )
        names = variants(c)
        batch_params, batch_state, batch_mask = (
            concat([jax.device_get(starts[v][i]) for v in names]) for i in range(3)
        )
        result = train_on_devices(
            train_seeds,
            self.model,
            self.data,
            make_optimizer(c),
            self.devices,
            init_keys=jnp.concatenate([self.init_keys] * len(names)),
            data_keys=jnp.concatenate([self.data_keys] * len(names)),
            steps=c.steps,
            batch_size=c.batch_size,
            eval_every=c.eval_every,
            params=batch_params,
            model_state=batch_state,
            mask=batch_mask,
            mask_per_seed=True,
            show_progress=show_progress,
        )
        records = []
        for j, variant in enumerate(names):
            part = seed_slice(result, j, c.seeds)
            records += seed_records(
                part,
                seed_slice(batch_mask, j, c.seeds),
                c.seeds,
                method=c.method,
                sparsity=target,
                phase=phase,
                variant=variant,
            )
        trained = seed_slice(result.params, 0, c.seeds)
        return AtInitPhase(jax.tree.map(np.asarray, trained), batch_mask), records

    def _masks(self, method, params, model_state, sparsity: float):
        """Every seed's mask from its init (host arrays), one vmapped program."""
        draw = jax.vmap(lambda p, s, k: method.mask(self.model, p, s, self.data, k, sparsity))
        return jax.device_get(draw(params, model_state, self.mask_keys))

    def pack(self, state: AtInitPhase) -> dict[str, Any]:
        """The state as flat named arrays (``"params/<leaf>"``, ``"masks/<leaf>"``)."""
        return {**flatten_tree(state.params, "params"), **flatten_tree(state.masks, "masks")}

    def unpack(self, flat: dict[str, Any]) -> AtInitPhase:
        """Inverse of :meth:`pack` (NumPy leaves)."""
        params = unflatten_into(self.template, flat, "params")
        masks = unflatten_into(dense_mask(self.template), flat, "masks")
        return AtInitPhase(jax.tree.map(np.asarray, params), jax.tree.map(np.asarray, masks))


# The workflow: run directory at-init-<method>-<model>-<dataset>-<digest>, one phase per
# target sparsity.
AT_INIT = Workflow(
    name=lambda c: f"at-init-{c.method}-{c.model}-{c.dataset}",
    phases=lambda c: range(len(c.sparsities)),
    setup=AtInitTrainer,
    group_key="phase",
)


def replace(config: AtInitConfig, **changes) -> AtInitConfig:
    """``dataclasses.replace`` for configs (checked again)."""
    return dataclasses.replace(config, **changes)
