"""Sparse model soups as a resumable workflow: one phase per IMP level, seeds vmapped.

Level 0 trains the dense network of every seed (snapshotting θ_k for ``retrain=rewind``).
Each later level, for every seed:

1. prunes ``prune_fraction`` of the previous soup's surviving weights by magnitude (the
   lottery workflow's pruner), and likewise the previous plain-IMP network;
2. retrains ``members`` copies with the soup's mask, from the previous soup's pruned
   weights (``retrain=soup``, the schedule restarted) or from θ_k (``retrain=rewind``),
   beside the plain IMP run from its own mask;
3. averages the members (:func:`jaxticket.soups.average`: the soup keeps exactly the
   mask), recomputes its BatchNorm statistics on training batches when the model has
   state, and evaluates it. The next level starts from this soup.

With ``vary="order"`` the members differ in data order only and train with IMP in ONE
``train_seeds`` program (members × seeds + seeds runs). With ``vary="weight_decay"`` each
member has its own optimizer: the engine takes one optimizer per program (its state is
initialized inside the compiled run), so each decay trains its seeds in a program of its
own. Key streams of ``config.seed``: 0 inits, 1 IMP's data order, ``3 + j`` member j's.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxticket.lottery.optimizer import make_optimizer
from jaxticket.lottery.state import concat, seed_slice, stack_seeds
from jaxticket.masks import dense_mask
from jaxticket.optim import get_mask
from jaxticket.soups.averaging import average
from jaxticket.soups.config import SoupConfig
from jaxticket.soups.pruners import magnitude_programs
from jaxticket.stability.batchnorm import has_state, recompute_batchnorm, training_batches
from jaxticket.train import train_seeds
from jaxticket.train.evaluate import evaluate
from jaxticket.train.runner import init_seeds
from jaxticket.workflow.config import ConfigError
from jaxticket.workflow.records import Record, seed_records
from jaxticket.workflow.run import Workflow, run_workflow
from jaxticket.workflow.setup import model_and_data
from jaxticket.workflow.store import RunStore, flatten_tree, unflatten_into
from jaxticket.workflow.training import resolve_devices, seed_keys, train_on_devices

__all__ = ["SOUPS", "SoupState", "SoupTrainer", "run_soups"]


class SoupState(NamedTuple):
    """What a finished level keeps, each leaf stacked over seeds (host arrays).

    Attributes:
      rewind, rewind_state: θ_k and its model state (``retrain=rewind``'s start).
      soup, soup_state, mask: the level's soup and its mask (level 0: the dense network).
      imp, imp_state, imp_mask: the plain IMP network of the level and its mask.
    """

    rewind: Any
    rewind_state: Any
    soup: Any
    soup_state: Any
    mask: Any
    imp: Any
    imp_state: Any
    imp_mask: Any


def run_soups(
    config: SoupConfig,
    *,
    out_dir: str = "runs",
    show_progress: bool = False,
    log=None,
    devices=None,
) -> tuple[RunStore, list[Record]]:
    """Runs (or resumes) the sparse-model-soup experiment ``config`` under ``out_dir``.

    Returns:
      The run's store (run directory ``soups-<model>-<dataset>-<digest>``) and the
      records, in level order: ``level``, ``kind`` (``dense`` at level 0, then
      ``member`` with ``member`` = j, ``soup`` and ``imp``), ``seed``, the accuracies,
      ``remaining``, ``layer_remaining``, ``collapsed``, ``diverged``, ``iterations``
      (optimizer steps the run trained; 0 for the soup) and ``history`` (empty for the
      soup, evaluated once; it has ``val_accuracy`` and ``val_loss`` instead).

    Raises:
      ConfigError: the config does not fit the model or the data (before anything trains).
    """
    return run_workflow(
        SOUPS, config, out_dir=out_dir, show_progress=show_progress, log=log, devices=devices
    )


class SoupTrainer:
    """The ``PhaseRunner`` of the soup workflow: data, model, keys, pruner, evaluation."""

    def __init__(self, config: SoupConfig, devices=None):
        self.config = c = config
        self.devices = resolve_devices(devices, "run_soups")
        setup = model_and_data(c, hidden=c.hidden)
        self.model, self.template, self.state_template, self.data = setup
        self.init_keys = seed_keys(c.seed, 0, c.seeds)
        self.imp_keys = seed_keys(c.seed, 1, c.seeds)
        self.member_keys = [seed_keys(c.seed, 3 + j, c.seeds) for j in range(c.members)]
        self.init_batch = init_seeds(self.model)
        self.prune = magnitude_programs(c.allocation, c.layer_rates, c.min_keep).by_fraction
        self.stateful = has_state(self.state_template)
        default = {f.name: f.default for f in dataclasses.fields(c)}["bn_batches"]
        if not self.stateful and c.bn_batches != default:
            raise ConfigError(
                "bn_batches",
                f"bn_batches has no effect: model {c.model!r} has no BatchNorm state; leave "
                f"it at its default {default}",
            )
        if self.stateful and c.bn_batches:
            self.bn_inputs = training_batches(self.data, c.bn_batches, c.batch_size)
            self.recompute = _recompute(self.model)
        # Built once per trainer (jit caches by the function object, so per level
        # would retrace).
        self.evaluate = _evaluator(self.model)

    def run_phase(
        self, level: int, prev: SoupState | None, show_progress: bool
    ) -> tuple[SoupState, list[Record]]:
        """Level 0 trains the dense networks; a later level prunes, retrains the members
        and IMP, and averages the members into the level's soup."""
        if level == 0:
            return self._dense(show_progress)
        c = self.config
        fraction = c.prune_fraction
        mask = jax.device_get(self.prune(prev.soup, prev.mask, fraction))
        imp_mask = jax.device_get(self.prune(prev.imp, prev.imp_mask, fraction))
        if c.retrain == "soup":
            start, start_state, imp_start, imp_state = (
                prev.soup,
                prev.soup_state,
                prev.imp,
                prev.imp_state,
            )
        else:
            start = imp_start = prev.rewind
            start_state = imp_state = prev.rewind_state
        offset = c.rewind if c.retrain == "rewind" else 0
        # (optimizer's weight decay, [(name, params, state, mask, data keys)]) per program.
        members = [
            (f"member{j}", start, start_state, mask, self.member_keys[j]) for j in range(c.members)
        ]
        imp = ("imp", imp_start, imp_state, imp_mask, self.imp_keys)
        decays = c.member_decays()
        if c.vary == "order":
            programs = [(c.weight_decay, [*members, imp])]
        else:
            programs = [(w, [run]) for w, run in zip(decays, members, strict=True)]
            programs.append((c.weight_decay, [imp]))
        results = {}
        for decay, runs in programs:
            result = self._train(runs, decay, offset, show_progress)
            for j, run in enumerate(runs):
                results[run[0]] = seed_slice(result, j, c.seeds)
        return self._finish(level, mask, imp_mask, prev, results, c.steps - offset)

    def _finish(self, level, mask, imp_mask, prev, results, iterations):
        c = self.config
        names = [f"member{j}" for j in range(c.members)]
        records = []
        for j, name in enumerate(names):
            part = results[name]
            records += seed_records(part, mask, c.seeds, level=level, kind="member", member=j)
        imp = results["imp"]
        records += seed_records(imp, imp_mask, c.seeds, level=level, kind="imp", member=-1)
        for r in records:
            r["iterations"] = iterations
        # The soup: the members' average; their optimizers' masks must agree (average
        # checks it, naming the leaf), so the soup keeps exactly the level's mask.
        stacked = concat_members([results[n].params for n in names])
        used = concat_members(
            [jax.tree.map(np.asarray, get_mask(results[n].opt_state)) for n in names]
        )
        soup = average(stacked, used)
        soup_state = jax.tree.map(
            lambda *s: np.mean(np.stack(s), axis=0).astype(s[0].dtype),
            *[results[n].model_state for n in names],
        )
        if self.stateful and c.bn_batches:
            soup_state = jax.device_get(self.recompute(soup, soup_state, self.bn_inputs))
        diverged = np.any([np.asarray(results[n].diverged) for n in names], axis=0)
        records += self._soup_records(level, soup, soup_state, mask, diverged, records)
        state = prev._replace(
            soup=soup,
            soup_state=soup_state,
            mask=mask,
            imp=imp.params,
            imp_state=imp.model_state,
            imp_mask=imp_mask,
        )
        return state, records

    def _soup_records(self, level, soup, soup_state, mask, diverged, member_records):
        d = self.data
        test = jax.device_get(self.evaluate(soup, soup_state, d.x_test, d.y_test))
        val = jax.device_get(self.evaluate(soup, soup_state, d.x_val, d.y_val))
        out = []
        for s in range(self.config.seeds):
            like = next(r for r in member_records if r["seed"] == s and r["kind"] == "member")
            acc = float(test["accuracy"][s])
            out.append(
                {
                    "level": level,
                    "kind": "soup",
                    "member": -1,
                    "seed": s,
                    "remaining": like["remaining"],
                    "layer_remaining": like["layer_remaining"],
                    "collapsed": like["collapsed"],
                    "diverged": bool(diverged[s]),
                    "diverged_step": -1,
                    "test_accuracy_early": acc,
                    "test_accuracy_final": acc,
                    "test_loss": float(test["loss"][s]),
                    "val_accuracy": float(val["accuracy"][s]),
                    "val_loss": float(val["loss"][s]),
                    "early_stop_step": -1,
                    "iterations": 0,
                    "history": {},
                }
            )
        return out

    def _dense(self, show_progress: bool) -> tuple[SoupState, list[Record]]:
        c = self.config
        params, model_state = jax.device_get(self.init_batch(self.init_keys))
        result = train_on_devices(
            train_seeds,
            self.model,
            self.data,
            make_optimizer(c),
            self.devices,
            init_keys=self.imp_keys,
            data_keys=self.imp_keys,
            steps=c.steps,
            batch_size=c.batch_size,
            eval_every=c.eval_every,
            params=params,
            model_state=model_state,
            snapshot_steps=(c.rewind,),
            show_progress=show_progress,
        )
        mask = stack_seeds(dense_mask(self.template), c.seeds)
        rewind, rewind_state = result.snapshots[0]
        trained, trained_state = result.params, result.model_state
        state = SoupState(
            rewind, rewind_state, trained, trained_state, mask, trained, trained_state, mask
        )
        records = seed_records(result, mask, c.seeds, level=0, kind="dense", member=-1)
        for r in records:
            r["iterations"] = c.steps
        return state, records

    def _train(self, runs, decay: float, offset: int, show_progress: bool):
        """The runs (stacked over seeds each) in one ``train_seeds`` program."""
        c = self.config
        optimizer = make_optimizer(
            dataclasses.replace(c, weight_decay=decay) if decay != c.weight_decay else c,
            offset=offset,
        )
        keys = jnp.concatenate([r[4] for r in runs])
        return train_on_devices(
            train_seeds,
            self.model,
            self.data,
            optimizer,
            self.devices,
            init_keys=keys,
            data_keys=keys,
            steps=c.steps - offset,
            start_step=offset,
            batch_size=c.batch_size,
            eval_every=c.eval_every,
            params=concat([r[1] for r in runs]),
            model_state=concat([r[2] for r in runs]),
            mask=concat([r[3] for r in runs]),
            mask_per_seed=True,
            show_progress=show_progress,
        )

    def pack(self, state: SoupState) -> dict[str, Any]:
        """The state as flat named arrays (``"<field>/<leaf>"``)."""
        flat = {}
        for name, tree in state._asdict().items():
            flat.update(flatten_tree(tree, name))
        return flat

    def unpack(self, flat: dict[str, Any]) -> SoupState:
        """Inverse of :meth:`pack` (NumPy leaves)."""
        mask = dense_mask(self.template)
        p, s = self.template, self.state_template
        templates = SoupState(p, s, p, s, mask, p, s, mask)
        return SoupState(
            **{
                name: jax.tree.map(np.asarray, unflatten_into(t, flat, name))
                for name, t in templates._asdict().items()
            }
        )


def concat_members(trees: list) -> Any:
    """Member trees (each stacked over seeds) stacked on a new leading member axis."""
    return jax.tree.map(
        lambda *xs: None if xs[0] is None else np.stack([np.asarray(x) for x in xs]),
        *trees,
        is_leaf=lambda x: x is None,
    )


def _evaluator(model):
    """``(params, state, x, y) -> {"loss", "accuracy"}`` per seed, jitted and vmapped."""
    fn = lambda p, s, x, y: evaluate(model.apply, p, s, x, y)  # noqa: E731
    return jax.jit(jax.vmap(fn, in_axes=(0, 0, None, None)))


def _recompute(model):
    """``recompute_batchnorm`` per seed, jitted and vmapped."""
    fn = lambda p, s, b: recompute_batchnorm(model.apply, p, s, b)  # noqa: E731
    return jax.jit(jax.vmap(fn, in_axes=(0, 0, None)))


SOUPS = Workflow(
    name=lambda c: f"soups-{c.model}-{c.dataset}",
    phases=lambda c: range(c.levels + 1),
    setup=SoupTrainer,
)
