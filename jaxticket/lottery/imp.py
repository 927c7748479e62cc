"""Iterative magnitude pruning with rewinding, its controls, and one-shot pruning.

Level 0 trains the dense net from θ₀ and records θ_k at the rewind iteration k. Each
later level prunes ``prune_fraction`` of the surviving weights of the previous level's
trained net (per-layer rates, layerwise or global), resets the survivors and retrains:

* ``rewind_mode="weights"``: survivors reset to θ_k, train T − k iterations from k
  (k = 0 is the original lottery ticket; k > 0 is late rewinding);
* ``"lr"``: keep the trained weights, restart the learning-rate schedule at k (Renda 2020);
* ``"finetune"``: keep the trained weights, train T − k iterations at the final rate.

Controls train beside the tickets at every level, with the ticket's per-layer counts:
``reinit`` (the ticket's mask on a fresh init), ``random_prune`` (random pruning applied
level after level: the surviving weights of the previous random mask are thinned at random
to the ticket's per-layer counts; original init) and ``shuffle`` (the ticket's mask permuted
within each layer, original init). All seeds and variants of a level train together in one
vmapped program. Each finished level is checkpointed; a rerun skips finished levels.

The workflow runs on ``jaxticket.workflow``: ``LOTTERY`` names its run directory, its
phases (the levels) and its runner (``Experiment``), and ``run_workflow`` resumes it.
A level leaves a ``LevelState``; each variant starts from a ``Start``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxticket import data as data_lib
from jaxticket import models as models_lib
from jaxticket.lottery import controls
from jaxticket.lottery.config import LotteryConfig, check_fits
from jaxticket.lottery.optimizer import make_optimizer
from jaxticket.lottery.pruners import imp_pruners
from jaxticket.lottery.state import LevelState, Start, concat, seed_slice, stack_seeds
from jaxticket.masks import dense_mask
from jaxticket.train import train_seeds
from jaxticket.train.runner import init_seeds
from jaxticket.workflow.records import Record, seed_records
from jaxticket.workflow.run import Workflow, run_identity, run_workflow
from jaxticket.workflow.store import RunStore, flatten_tree, unflatten_into
from jaxticket.workflow.training import (
    resolve_devices,
    seed_keys,
    stream_key,
    train_on_devices,
)

__all__ = ["LOTTERY", "Experiment", "LevelState", "Start", "run_identity", "run_lottery"]


def run_lottery(
    config: LotteryConfig,
    *,
    out_dir: str = "runs",
    show_progress: bool = False,
    log=None,
    devices=None,
) -> tuple[RunStore, list[Record]]:
    """Runs (or resumes) the lottery experiment ``config`` under ``out_dir``.

    Args:
      devices: the devices the seeds (and variants) of a level are spread over; default:
        all devices of JAX's default backend. One device trains everything in one
        vmapped program; with several, each holds a share of the seeds (a CPU-only
        machine has one device unless ``jax_num_cpu_devices`` is set before JAX starts,
        as the ``jaxticket`` command does: one device per core). Results agree across
        device counts up to float rounding; with a fixed device count they are bitwise
        reproducible, so the device count (with x64 mode and the platform, see
        :func:`run_identity`) names the run directory: a resume elsewhere never mixes
        levels computed under different settings.

    Returns:
      The run's store (its ``run_dir`` holds config, checkpoints, results.json/csv) and
      the records, one per (level, variant, seed); see ``jaxticket.lottery.report``.

    Raises:
      ConfigError: the config does not fit the model or the data (checked before level 0).

    Warns:
      LayerCollapseWarning: a level left a prunable leaf with no weight (its records say
        which, under ``collapsed``).
      DivergenceWarning: a run's loss or weights became non-finite (records: ``diverged``,
        ``diverged_step``).
    """
    return run_workflow(
        LOTTERY, config, out_dir=out_dir, show_progress=show_progress, log=log, devices=devices
    )


def _levels(c: LotteryConfig) -> list[int]:
    # One-shot: level 0 dense, then one phase that trains every one-shot sparsity.
    if c.one_shot:
        return [0, 1]
    return list(range((len(c.level_sparsities) or c.levels) + 1))


class Experiment:
    """The pieces one lottery run is made of: data, model, optimizers, pruners, keys.

    The workflow's ``PhaseRunner``: ``run_level`` (alias ``run_phase``), ``pack``, ``unpack``.
    """

    def __init__(self, config: LotteryConfig, devices=None):
        self.config = c = config
        self.devices = resolve_devices(devices, "run_lottery")
        data = data_lib.load(c.dataset)
        self.model = _model(c.model, tuple(data.input_shape), data.num_classes)
        params, model_state = jax.eval_shape(self.model.init, jax.random.key(0))
        self.template = params
        self.state_template = model_state
        check_fits(c, data, dense_mask(params))
        self.data = data_lib.with_validation(data, c.val_size, seed=c.seed)
        # Key streams of config.seed: 0 inits, 1 data order (per seed), 2 the controls.
        self.init_keys = seed_keys(c.seed, 0, c.seeds)
        self.data_keys = seed_keys(c.seed, 1, c.seeds)
        self.control_key = stream_key(c.seed, 2)
        self.pruner, self.one_shot_pruner, self.dense_mask = imp_pruners(
            c, self.model, params, model_state
        )
        # One jitted batched init per run: a fresh jax.jit(jax.vmap(...)) at every call
        # would miss jit's cache and recompile at every level.
        self.init_batch = init_seeds(self.model)

    # -- one level -------------------------------------------------------------------

    def run_level(
        self, level: int, prev: LevelState | None, show_progress: bool
    ) -> tuple[LevelState, list[Record]]:
        """Trains ``level`` (one-shot: every one-shot sparsity, levels ``level..``) from
        the state ``prev`` the previous level left; returns the new state and records."""
        c = self.config
        if level == 0:
            return self._dense(show_progress)
        if c.one_shot:
            masks = [self._prune_to(prev, s) for s in c.one_shot]
        elif c.level_sparsities:
            masks = [self._prune_to(prev, c.level_sparsities[level - 1], prev.mask)]
        else:
            masks = [self._prune_step(prev.trained, prev.mask)]
        runs: list[tuple[int, str, Start]] = []  # (level, variant, start), in batch order
        for i, mask in enumerate(masks):
            starts = self._starts(prev, mask, level + i)
            runs += [(level + i, variant, starts[variant]) for variant in c.variants]
        batch = Start(*(concat(parts) for parts in zip(*(s for _, _, s in runs), strict=True)))
        data_keys = jnp.concatenate([self.data_keys] * len(runs))
        result = self._train(
            self._optimizer(offset=c.rewind, final=c.rewind_mode == "finetune"),
            data_keys,
            steps=c.steps - c.rewind,
            start_step=c.rewind,
            params=batch.params,
            model_state=batch.model_state,
            mask=batch.mask,
            mask_per_seed=True,
            show_progress=show_progress,
        )
        records = []
        for j, (lvl, variant, start) in enumerate(runs):
            part = seed_slice(result, j, c.seeds)
            records += seed_records(part, start.mask, c.seeds, level=lvl, variant=variant)
        # IMP continues from the ticket of the (last) level.
        last = level + len(masks) - 1
        j = [(lvl, v) for lvl, v, _ in runs].index((last, "ticket"))
        ticket = seed_slice(result, j, c.seeds)
        last_starts = {v: s for lvl, v, s in runs if lvl == last}
        random = last_starts.get("random_prune")
        state = prev._replace(
            mask=last_starts["ticket"].mask,
            trained=ticket.params,
            trained_state=ticket.model_state,
            random_mask=prev.random_mask if random is None else random.mask,
        )
        return state, records

    run_phase = run_level  # the workflow's name for it

    def _dense(self, show_progress: bool) -> tuple[LevelState, list[Record]]:
        c = self.config
        params, model_state = jax.device_get(self.init_batch(self.init_keys))
        result = self._train(
            self._optimizer(),
            self.data_keys,
            steps=c.steps,
            params=params,
            model_state=model_state,
            snapshot_steps=(c.rewind,),
            show_progress=show_progress,
        )
        mask = stack_seeds(self.dense_mask, c.seeds)
        rewind_params, rewind_state = result.snapshots[0]
        state = LevelState(
            init=params,
            init_state=model_state,
            rewind=rewind_params,
            rewind_state=rewind_state,
            mask=mask,
            random_mask=mask,
            trained=result.params,
            trained_state=result.model_state,
        )
        return state, seed_records(result, mask, c.seeds, level=0, variant="ticket")

    def _train(self, optimizer, data_keys, **kwargs):
        """Trains the stacked runs (params given), spread over ``self.devices``; the
        result comes back to the host as NumPy arrays."""
        c = self.config
        # run_lottery warns naming level, variant and seed (the engine's warning would
        # name positions in the level's batch of runs).
        return train_on_devices(
            train_seeds,
            self.model,
            self.data,
            optimizer,
            self.devices,
            init_keys=data_keys,
            data_keys=data_keys,
            batch_size=c.batch_size,
            eval_every=c.eval_every,
            **kwargs,
        )

    def _starts(self, prev: LevelState, mask, level: int) -> dict[str, Start]:
        """Where each variant starts (each stacked over seeds), by variant name."""
        c = self.config
        if c.rewind_mode == "weights":
            ticket = Start(prev.rewind, prev.rewind_state, mask)
        else:
            ticket = Start(prev.trained, prev.trained_state, mask)
        starts = {"ticket": ticket}
        key = jax.random.fold_in(self.control_key, level)
        keys = jax.random.split(key, 3 * c.seeds).reshape(3, c.seeds)
        if "reinit" in c.controls:
            fresh, fresh_state = jax.device_get(self.init_batch(keys[0]))
            starts["reinit"] = Start(fresh, fresh_state, mask)
        if "random_prune" in c.controls:
            rand = controls.thin_to_counts(keys[1], prev.random_mask, mask)
            starts["random_prune"] = ticket._replace(mask=rand)
        if "shuffle" in c.controls:
            starts["shuffle"] = ticket._replace(mask=controls.shuffle(keys[2], mask))
        return starts

    # -- pruning -----------------------------------------------------------------------

    def _prune_step(self, trained, mask):
        prune = _jit_prune(self.pruner, "fraction")
        return jax.device_get(prune(trained, mask, self.config.prune_fraction))

    def _prune_to(self, prev: LevelState, sparsity: float, mask=None):
        """``prev.trained`` pruned to ``sparsity`` of the prunable weights in total, from
        ``mask`` (default: the dense mask, one-shot pruning)."""
        if mask is None:
            mask = stack_seeds(self.dense_mask, self.config.seeds)
        prune = _jit_prune(self.one_shot_pruner, "sparsity")
        return jax.device_get(prune(prev.trained, mask, sparsity))

    # -- optimizer -----------------------------------------------------------------------

    def _optimizer(self, offset: int = 0, final: bool = False):
        return make_optimizer(self.config, offset=offset, final=final)

    # -- checkpoints ---------------------------------------------------------------------

    def pack(self, state: LevelState) -> dict[str, Any]:
        """The state as flat named arrays (``"<field>/<leaf path>"``) for the checkpoint."""
        flat = {}
        for name, tree in state._asdict().items():
            flat.update(flatten_tree(tree, name))
        return flat

    def unpack(self, flat: dict[str, Any]) -> LevelState:
        """Inverse of :meth:`pack` (NumPy leaves)."""
        mask = self.dense_mask
        templates = LevelState(
            init=self.template,
            init_state=self.state_template,
            rewind=self.template,
            rewind_state=self.state_template,
            mask=mask,
            random_mask=mask,
            trained=self.template,
            trained_state=self.state_template,
        )
        return LevelState(
            **{
                name: jax.tree.map(np.asarray, unflatten_into(t, flat, name))
                for name, t in templates._asdict().items()
            }
        )


# The workflow: run directory lottery-<model>-<dataset>-<digest>, one phase per level.
LOTTERY = Workflow(
    name=lambda c: f"lottery-{c.model}-{c.dataset}",
    phases=_levels,
    setup=Experiment,
)


@functools.lru_cache(maxsize=8)
def _model(name: str, input_shape: tuple[int, ...], num_classes: int):
    # One Model object per architecture, so the train programs cached on it (and on the
    # optimizer) are reused by later runs in the same process instead of recompiled.
    return models_lib.get(name, input_shape=input_shape, num_classes=num_classes)


@functools.lru_cache(maxsize=16)
def _jit_prune(pruner, kind: str):
    # The amount is traced, so one compiled program serves every level and every one-shot
    # sparsity (a constant amount would compile once per value).
    return jax.jit(jax.vmap(lambda p, m, a: pruner(p, m, **{kind: a}), in_axes=(0, 0, None)))
