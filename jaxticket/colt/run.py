"""COLT as a resumable workflow: one phase per cycle, seeds vmapped, IMP beside it.

Phase 0 trains the dense network on all the training data (snapshotting θ_k); it is also
IMP's level 0. Phase ``p`` (``p >= 1``) trains, from θ_k, COLT's ticket (mask ``M_p``)
and IMP's ticket at the same sparsity (mask ``I_p``) on all the data, both in one
``train_seeds`` program (2 × seeds runs). Every phase before the last then finds the
next masks:

1. one copy per data segment trains ``segment_steps`` iterations from θ_k with ``M_p``;
2. each copy is pruned by magnitude (``prune_fraction`` of its survivors) and
   ``M_{p+1}`` keeps the weights alive in all of them (:func:`jaxticket.colt.overlap`);
3. IMP's trained ticket is pruned from ``I_p`` to exactly ``M_{p+1}``'s sparsity, seed
   by seed (the lottery workflow's exact-total pruner), so the two compare at equal
   sparsity.

The engine trains every run of a program on one data set (the data is not batched over
seeds), so the copies cannot take different segments in one program; the segments have
equal shapes, so one compiled program (seeds vmapped) is called once per segment.

Iterations (records): ``find_iterations``, the optimizer steps spent finding the mask
(COLT: ``rewind + p·K·segment_steps`` over all copies, ``find_iterations_parallel``
``rewind + p·segment_steps`` when the copies run side by side; IMP: ``steps +
(p − 1)·(steps − rewind)``), and ``train_iterations``, the steps of the ticket's own
full-data training (``steps − rewind``, as for IMP). Key streams of ``config.seed``:
0 inits, 1 the full-data order, ``3 + j`` segment j's copies.
"""

from __future__ import annotations

import types
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxticket.colt.config import ColtConfig
from jaxticket.colt.segments import overlap, split_segments
from jaxticket.lottery.optimizer import make_optimizer
from jaxticket.lottery.state import concat, seed_slice, stack_seeds
from jaxticket.masks import dense_mask
from jaxticket.soups.pruners import magnitude_programs
from jaxticket.train import train_seeds
from jaxticket.train.runner import init_seeds
from jaxticket.workflow.config import ConfigError
from jaxticket.workflow.records import Record, seed_records
from jaxticket.workflow.run import Workflow, run_workflow
from jaxticket.workflow.setup import model_and_data
from jaxticket.workflow.store import RunStore, flatten_tree, unflatten_into
from jaxticket.workflow.training import resolve_devices, seed_keys, train_on_devices

__all__ = ["COLT", "ColtState", "ColtTrainer", "run_colt"]


class ColtState(NamedTuple):
    """What a finished phase keeps for the next, each leaf stacked over seeds (host).

    Attributes:
      rewind, rewind_state: θ_k and its model state.
      mask: COLT's next mask (the overlap the phase found).
      imp_mask: IMP's next mask, at the same sparsity as ``mask``.
    """

    rewind: Any
    rewind_state: Any
    mask: Any
    imp_mask: Any


def run_colt(
    config: ColtConfig,
    *,
    out_dir: str = "runs",
    show_progress: bool = False,
    log=None,
    devices=None,
) -> tuple[RunStore, list[Record]]:
    """Runs (or resumes) the COLT experiment ``config`` under ``out_dir``.

    Returns:
      The run's store (run directory ``colt-<model>-<dataset>-<digest>``) and the
      records, in phase order: ``cycle``, ``kind`` (``dense`` at cycle 0, ``colt`` and
      ``imp`` tickets trained on all the data, ``copy`` for the segments' copies with
      ``segment`` = j), ``seed``, the accuracies, ``remaining``, ``layer_remaining``,
      ``collapsed``, ``diverged``, ``find_iterations``, ``find_iterations_parallel``,
      ``train_iterations`` and ``history``.

    Raises:
      ConfigError: more segments than training examples, a batch larger than a segment,
        or a config that does not fit the model or data (before anything trains).
    """
    return run_workflow(
        COLT, config, out_dir=out_dir, show_progress=show_progress, log=log, devices=devices
    )


class ColtTrainer:
    """The ``PhaseRunner`` of the COLT workflow: data and its segments, model, keys,
    pruners."""

    def __init__(self, config: ColtConfig, devices=None):
        self.config = c = config
        self.devices = resolve_devices(devices, "run_colt")
        setup = model_and_data(c, hidden=c.hidden)
        self.model, self.template, self.state_template, self.data = setup
        self.parts = split_segments(self.data, c.segments, c.seed)
        size = int(self.parts[0].x_train.shape[0])
        if c.batch_size > size:
            raise ConfigError(
                "batch_size",
                f"batch_size must be <= {size}, the examples of each of the {c.segments} "
                f"segments, got {c.batch_size}",
            )
        self.init_keys = seed_keys(c.seed, 0, c.seeds)
        self.data_keys = seed_keys(c.seed, 1, c.seeds)
        self.segment_keys = [seed_keys(c.seed, 3 + j, c.seeds) for j in range(c.segments)]
        self.init_batch = init_seeds(self.model)
        self.prune, self.prune_to = magnitude_programs(c.allocation, c.layer_rates, c.min_keep)

    def run_phase(
        self, cycle: int, prev: ColtState | None, show_progress: bool
    ) -> tuple[ColtState, list[Record]]:
        """Trains the cycle's tickets on all the data (the dense network at cycle 0), then,
        before the last cycle, the segments' copies and the next masks."""
        c = self.config
        if cycle == 0:
            state, records, imp_trained = self._dense(show_progress)
        else:
            state = prev
            records, imp_trained = self._tickets(cycle, prev, show_progress)
        if cycle == c.cycles:
            return state, records
        copies, masks = self._copies(cycle, state, show_progress)
        mask = overlap(masks)
        records += copies
        target = 1.0 - _remaining(mask)
        imp_mask = jax.device_get(self.prune_to(imp_trained, state.imp_mask, target))
        return state._replace(mask=mask, imp_mask=imp_mask), records

    def _dense(self, show_progress: bool):
        c = self.config
        params, model_state = jax.device_get(self.init_batch(self.init_keys))
        result = self._train(
            make_optimizer(c),
            self.data,
            self.data_keys,
            steps=c.steps,
            params=params,
            model_state=model_state,
            snapshot_steps=(c.rewind,),
            show_progress=show_progress,
        )
        mask = stack_seeds(dense_mask(self.template), c.seeds)
        rewind, rewind_state = result.snapshots[0]
        records = seed_records(result, mask, c.seeds, cycle=0, kind="dense", segment=-1)
        for r in records:
            r.update(find_iterations=0, find_iterations_parallel=0, train_iterations=c.steps)
        return ColtState(rewind, rewind_state, mask, mask), records, result.params

    def _tickets(self, cycle: int, prev: ColtState, show_progress: bool):
        c, k = self.config, self.config.rewind
        result = self._train(
            make_optimizer(c, offset=k),
            self.data,
            jnp.concatenate([self.data_keys] * 2),
            steps=c.steps - k,
            start_step=k,
            params=concat([prev.rewind] * 2),
            model_state=concat([prev.rewind_state] * 2),
            mask=concat([prev.mask, prev.imp_mask]),
            mask_per_seed=True,
            show_progress=show_progress,
        )
        colt, imp = seed_slice(result, 0, c.seeds), seed_slice(result, 1, c.seeds)
        records = seed_records(colt, prev.mask, c.seeds, cycle=cycle, kind="colt", segment=-1)
        colt_find = k + cycle * c.segments * c.copy_steps()
        for r in records:
            r.update(
                find_iterations=colt_find,
                find_iterations_parallel=k + cycle * c.copy_steps(),
                train_iterations=c.steps - k,
            )
        imp_records = seed_records(imp, prev.imp_mask, c.seeds, cycle=cycle, kind="imp", segment=-1)
        imp_find = c.steps + (cycle - 1) * (c.steps - k)
        for r in imp_records:
            r.update(
                find_iterations=imp_find,
                find_iterations_parallel=imp_find,
                train_iterations=c.steps - k,
            )
        return records + imp_records, imp.params

    def _copies(self, cycle: int, state: ColtState, show_progress: bool):
        """Each segment's copy trained from θ_k with the current mask, its records and its
        pruned mask (stacked over segments)."""
        c, k = self.config, self.config.rewind
        steps = c.copy_steps()
        schedule = types.SimpleNamespace(
            optimizer=c.optimizer,
            learning_rate=c.learning_rate,
            schedule=c.schedule,
            steps=k + steps,  # the schedule spans the copy's own run
            weight_decay=c.weight_decay,
        )
        optimizer = make_optimizer(schedule, offset=k)
        records, pruned = [], []
        for j, part in enumerate(self.parts):
            result = self._train(
                optimizer,
                part,
                self.segment_keys[j],
                steps=steps,
                start_step=k,
                eval_every=min(c.eval_every, steps),
                params=state.rewind,
                model_state=state.rewind_state,
                mask=state.mask,
                mask_per_seed=True,
                show_progress=show_progress,
            )
            records += seed_records(
                result, state.mask, c.seeds, cycle=cycle, kind="copy", segment=j
            )
            pruned.append(jax.device_get(self.prune(result.params, state.mask, c.prune_fraction)))
        for r in records:
            r.update(find_iterations=0, find_iterations_parallel=0, train_iterations=steps)
        masks = jax.tree.map(
            lambda *m: None if m[0] is None else np.stack(m), *pruned, is_leaf=lambda x: x is None
        )
        return records, masks

    def _train(self, optimizer, data, data_keys, **kwargs):
        c = self.config
        kwargs.setdefault("eval_every", c.eval_every)
        return train_on_devices(
            train_seeds,
            self.model,
            data,
            optimizer,
            self.devices,
            init_keys=data_keys,
            data_keys=data_keys,
            batch_size=c.batch_size,
            **kwargs,
        )

    def pack(self, state: ColtState) -> dict[str, Any]:
        """The state as flat named arrays (``"<field>/<leaf>"``)."""
        flat = {}
        for name, tree in state._asdict().items():
            flat.update(flatten_tree(tree, name))
        return flat

    def unpack(self, flat: dict[str, Any]) -> ColtState:
        """Inverse of :meth:`pack` (NumPy leaves)."""
        mask = dense_mask(self.template)
        templates = ColtState(self.template, self.state_template, mask, mask)
        return ColtState(
            **{
                name: jax.tree.map(np.asarray, unflatten_into(t, flat, name))
                for name, t in templates._asdict().items()
            }
        )


def _remaining(mask) -> np.ndarray:
    """The fraction of prunable weights alive, per seed (``float64[seeds]``)."""
    leaves = [np.asarray(m) for m in jax.tree.leaves(mask)]
    alive = sum(m.reshape(m.shape[0], -1).sum(1) for m in leaves)
    total = sum(int(np.prod(m.shape[1:])) for m in leaves)
    return alive / total


COLT = Workflow(
    name=lambda c: f"colt-{c.model}-{c.dataset}",
    phases=lambda c: range(c.cycles + 1),
    setup=ColtTrainer,
    group_key="cycle",
)
