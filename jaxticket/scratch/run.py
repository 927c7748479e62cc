"""Scratch training against fine-tuning as a resumable workflow, seeds vmapped.

Phase 0 trains the dense network of every seed from the inits ``seed_keys(seed, 0, n)``
with the data order ``seed_keys(seed, 1, n)``: the same keys and the same call as the
lottery workflow's level 0, so its dense network is the lottery's level 0. Phase ``k >= 1``
prunes phase 0's trained weights by magnitude to the ``k``-th target sparsity (per seed,
one vmapped program, exact target) and trains the configured variants under that mask:

* ``finetune``: the trained weights (and model state), ``finetune_steps`` steps at the
  constant rate ``finetune_learning_rate``;
* ``scratch_e``: a fresh init (key stream 2, ``seed_keys(seed, 2, n)``, the same at every
  sparsity), ``steps`` steps with the dense run's optimizer and schedule;
* ``scratch_b``: the same fresh init, ``scratch_b_steps`` steps (the dense run's compute,
  taken as proportional to the alive prunable weights: exact for MLPs, an approximation
  for convolutions), the dense run's optimizer with its schedule spread over those steps.

Every variant sees the data order of stream 1. Variants with the same step count and the
same optimizer settings train together in one ``train_seeds`` call, stacked along the seed
axis. A phase's checkpoint holds phase 0's trained params and model state (later phases
need them) and the phase's mask, nothing else.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxticket.lottery.optimizer import make_optimizer
from jaxticket.lottery.state import concat, seed_slice, stack_seeds
from jaxticket.masks import dense_mask
from jaxticket.pruning import criteria, layerwise, magnitude_pruner, make_pruner
from jaxticket.scratch.config import ScratchConfig, scratch_b_steps
from jaxticket.train import train_seeds
from jaxticket.train.runner import init_seeds
from jaxticket.workflow.records import Record, seed_records
from jaxticket.workflow.run import Workflow, run_workflow
from jaxticket.workflow.setup import model_and_data
from jaxticket.workflow.store import RunStore, flatten_tree, unflatten_into
from jaxticket.workflow.training import resolve_devices, seed_keys, train_on_devices

__all__ = [
    "SCRATCH",
    "OptimizerSettings",
    "ScratchState",
    "ScratchTrainer",
    "prune_program",
    "run_scratch",
    "scratch_b_steps_for",
]


class ScratchState(NamedTuple):
    """What a finished phase keeps, each leaf stacked over seeds (host arrays).

    Attributes:
      trained, trained_state: phase 0's trained dense params and model state.
      mask: the phase's mask (phase 0: dense; ``None`` leaves are not prunable).
    """

    trained: Any
    trained_state: Any
    mask: Any


class OptimizerSettings(NamedTuple):
    """What ``make_optimizer`` reads: equal settings give the same (cached) optimizer, so
    the runs that share them can train in one program."""

    optimizer: str
    learning_rate: float
    schedule: str
    weight_decay: float
    steps: int


def run_scratch(
    config: ScratchConfig,
    *,
    out_dir: str = "runs",
    show_progress: bool = False,
    log=None,
    devices=None,
) -> tuple[RunStore, list[Record]]:
    """Runs (or resumes) the scratch-versus-fine-tune experiment ``config`` under ``out_dir``.

    Args:
      config: the experiment.
      out_dir: folder holding run directories; this run's is
        ``scratch-<model>-<dataset>-<digest>``.
      show_progress: progress bars.
      log: called with one line per event (run directory, each phase loaded or trained).
      devices: the devices the stacked runs are spread over (default: every device of
        JAX's default backend); the count names the run directory.

    Returns:
      The run's store and the records, one per (phase, variant, seed), in phase order:
      ``method`` (``"finetune"``), ``variant`` (``"dense"`` in phase 0, else the
      variant), ``sparsity`` (the target; 0.0 for dense), ``phase``, ``seed``,
      ``steps_trained`` (steps that run trained), the accuracies, ``remaining``,
      ``layer_remaining``, ``collapsed``, ``diverged`` and ``history``.

    Raises:
      ConfigError: the config does not fit the model or the data (before anything trains).

    Warns:
      LayerCollapseWarning, DivergenceWarning: a phase left a layer without weights, or a
        run's loss or weights became non-finite.
    """
    return run_workflow(
        SCRATCH, config, out_dir=out_dir, show_progress=show_progress, log=log, devices=devices
    )


class ScratchTrainer:
    """The ``PhaseRunner`` of the scratch workflow: data, model, keys, pruner, devices."""

    def __init__(self, config: ScratchConfig, devices=None):
        self.config = c = config
        self.devices = resolve_devices(devices, "run_scratch")
        self.model, self.template, self.state_template, self.data = model_and_data(
            c, hidden=c.hidden
        )
        # Key streams of config.seed: 0 the dense inits and 1 the data order (as the
        # lottery workflow's level 0), 2 the fresh inits of scratch training.
        self.init_keys, self.data_keys, self.fresh_keys = (
            seed_keys(c.seed, stream, c.seeds) for stream in range(3)
        )
        self.init_batch = init_seeds(self.model)
        self.prune = prune_program(c.allocation, c.min_keep)

    def settings(self, steps: int, *, finetune: bool = False) -> OptimizerSettings:
        """The optimizer settings of a run of ``steps`` steps: the dense run's optimizer
        and schedule (spread over ``steps``), or fine-tuning's constant rate."""
        c = self.config
        if finetune:
            return OptimizerSettings(
                c.optimizer, c.finetune_learning_rate, "constant", c.weight_decay, steps
            )
        return OptimizerSettings(c.optimizer, c.learning_rate, c.schedule, c.weight_decay, steps)

    def groups(self, mask) -> dict[OptimizerSettings, list[str]]:
        """The configured variants of a phase with ``mask`` (stacked over seeds), grouped
        by their optimizer settings (step count included; one ``train_seeds`` call each),
        in the config's variant order: ``finetune`` at its constant rate for
        ``finetune_steps``, ``scratch_e`` for ``steps`` and ``scratch_b`` for
        :func:`scratch_b_steps_for` steps with the dense run's optimizer."""
        c = self.config
        steps = {
            "scratch_e": c.steps,
            "scratch_b": scratch_b_steps_for(mask, c.steps, c.scratch_b_cap),
        }
        groups: dict[OptimizerSettings, list[str]] = {}
        for variant in c.variants:
            if variant == "finetune":
                settings = self.settings(c.finetune_steps, finetune=True)
            else:
                settings = self.settings(steps[variant])
            groups.setdefault(settings, []).append(variant)
        return groups

    def run_phase(
        self, phase: int, state: ScratchState | None, show_progress: bool
    ) -> tuple[ScratchState, list[Record]]:
        """Phase 0: the dense run. Phase ``k``: prune phase 0's weights to the ``k``-th
        target and train the variants (``state`` holds phase 0's trained weights)."""
        c = self.config
        if phase == 0:
            return self._dense(show_progress)
        target = c.sparsities[phase - 1]
        dense = stack_seeds(dense_mask(self.template), c.seeds)
        mask = jax.tree.map(np.asarray, jax.device_get(self.prune(state.trained, dense, target)))
        fresh, fresh_state = jax.device_get(self.init_batch(self.fresh_keys))
        starts = {
            "finetune": (state.trained, state.trained_state),
            "scratch_e": (fresh, fresh_state),
            "scratch_b": (fresh, fresh_state),
        }
        by_variant = {}
        for settings, group in self.groups(mask).items():
            result = self._train(
                settings,
                len(group),
                params=concat([starts[v][0] for v in group]),
                model_state=concat([starts[v][1] for v in group]),
                mask=concat([mask] * len(group)),
                mask_per_seed=True,
                show_progress=show_progress,
            )
            for j, variant in enumerate(group):
                by_variant[variant] = (seed_slice(result, j, c.seeds), settings.steps)
        records = []
        for variant in c.variants:  # records in the config's variant order
            part, steps = by_variant[variant]
            records += self._records(part, mask, variant, target, phase, steps)
        return state._replace(mask=mask), records

    def _dense(self, show_progress: bool) -> tuple[ScratchState, list[Record]]:
        c = self.config
        params, model_state = jax.device_get(self.init_batch(self.init_keys))
        result = self._train(
            self.settings(c.steps),
            1,
            params=params,
            model_state=model_state,
            show_progress=show_progress,
        )
        mask = stack_seeds(dense_mask(self.template), c.seeds)
        records = self._records(result, mask, "dense", 0.0, 0, c.steps)
        trained = jax.tree.map(np.asarray, result.params)
        trained_state = jax.tree.map(np.asarray, result.model_state)
        return ScratchState(trained, trained_state, mask), records

    def _train(self, settings: OptimizerSettings, runs: int, **kwargs):
        """``runs`` stacked copies of the seeds (params given), spread over the devices,
        each with the data order of stream 1; the result as host arrays."""
        c = self.config
        data_keys = jnp.concatenate([self.data_keys] * runs)
        # The workflow warns naming the phase, variant and seed (the engine would name
        # positions in the batch).
        return train_on_devices(
            train_seeds,
            self.model,
            self.data,
            make_optimizer(settings),
            self.devices,
            init_keys=data_keys,  # unused: params are given (as in the lottery's level 0)
            data_keys=data_keys,
            steps=settings.steps,
            batch_size=c.batch_size,
            eval_every=c.eval_every,
            **kwargs,
        )

    def _records(self, result, mask, variant, target, phase, steps) -> list[Record]:
        records = seed_records(
            result,
            mask,
            self.config.seeds,
            method="finetune",
            variant=variant,
            sparsity=target,
            phase=phase,
        )
        for r in records:
            r["steps_trained"] = steps
        return records

    def pack(self, state: ScratchState) -> dict[str, Any]:
        """The state as flat named arrays (``"trained/<leaf>"``, ``"trained_state/<leaf>"``,
        ``"mask/<leaf>"``)."""
        flat = {}
        for name, tree in state._asdict().items():
            flat.update(flatten_tree(tree, name))
        return flat

    def unpack(self, flat: dict[str, Any]) -> ScratchState:
        """Inverse of :meth:`pack` (NumPy leaves)."""
        templates = ScratchState(self.template, self.state_template, dense_mask(self.template))
        return ScratchState(
            **{
                name: jax.tree.map(np.asarray, unflatten_into(t, flat, name))
                for name, t in templates._asdict().items()
            }
        )


def scratch_b_steps_for(mask, steps: int, cap: float) -> int:
    """:func:`~jaxticket.scratch.config.scratch_b_steps` of a mask stacked over seeds
    (prunable weights: the non-``None`` leaves' entries; alive: their non-zero entries).

    Raises:
      RuntimeError: the seeds' masks keep different counts (exact pruning never does).
    """
    leaves = [np.asarray(m) for m in jax.tree.leaves(mask)]
    prunable = sum(int(np.prod(m.shape[1:])) for m in leaves)
    seeds = leaves[0].shape[0]
    alive = {sum(int(np.count_nonzero(m[s])) for m in leaves) for s in range(seeds)}
    if len(alive) != 1:
        raise RuntimeError(f"scratch_b: the seeds' masks keep different counts {sorted(alive)}")
    return scratch_b_steps(steps, prunable, alive.pop(), cap)


@functools.lru_cache(maxsize=8)
def prune_program(allocation: str, min_keep: int):
    """``(params, masks, sparsity) -> masks`` stacked over seeds: magnitude pruning to
    exactly ``sparsity`` of the prunable weights (``global``: one threshold; ``layerwise``:
    each layer to the target, counts rounded so the total is exact), jitted and vmapped
    with the sparsity traced (one program for every phase)."""
    if allocation == "global":
        pruner = magnitude_pruner("global", min_keep=min_keep)
    else:
        pruner = make_pruner(
            criteria.magnitude, layerwise(None, exact_total=True), min_keep=min_keep
        )
    return jax.jit(jax.vmap(lambda p, m, s: pruner(p, m, sparsity=s), in_axes=(0, 0, None)))


def _phases(c: ScratchConfig) -> range:
    return range(len(c.sparsities) + 1)


# The workflow: run directory scratch-<model>-<dataset>-<digest>; phase 0 dense, then one
# phase per target sparsity (a record's ``phase`` names it in warnings).
SCRATCH = Workflow(
    name=lambda c: f"scratch-{c.model}-{c.dataset}",
    phases=_phases,
    setup=ScratchTrainer,
    group_key="phase",
)
