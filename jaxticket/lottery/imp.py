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
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxticket import data as data_lib
from jaxticket import models as models_lib
from jaxticket.lottery import controls
from jaxticket.lottery.config import RUNTIME_KEY, LotteryConfig, check_fits
from jaxticket.lottery.optimizer import make_optimizer
from jaxticket.lottery.records import Record, level_records, warn_collapsed, warn_diverged
from jaxticket.lottery.store import RunStore, flatten_tree, unflatten_into
from jaxticket.masks import dense_mask
from jaxticket.pruning import criteria, layerwise, magnitude_pruner, make_pruner
from jaxticket.train import DivergenceWarning, train_seeds
from jaxticket.train.runner import init_seeds, seed_mesh

_is_none = lambda x: x is None  # noqa: E731


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
    log = log or (lambda msg: None)
    exp = Experiment(config, devices=devices)
    identity = run_identity(config, exp.devices)
    store = RunStore.open(out_dir, identity, name=f"lottery-{config.model}-{config.dataset}")
    # One process per run directory: a second identical command is refused at once (the
    # kernel drops the lock of a killed process, so a stale lock never blocks).
    with store.locked():
        log(f"run directory: {store.run_dir}")
        levels = [0, 1] if config.one_shot else list(range(config.levels + 1))
        records: list[Record] = []
        state = None
        for level in levels:
            loaded = store.load_level(level)
            if loaded is not None:
                arrays, new = loaded
                state = exp.unpack(arrays)
                log(f"level {level}: finished earlier, loaded")
            else:
                log(f"level {level}: training")
                state, new = exp.run_level(level, state, show_progress)
                store.save_level(level, exp.pack(state), new)
            for lvl in sorted({r["level"] for r in new}):
                chosen = [r for r in new if r["level"] == lvl]
                warn_collapsed(lvl, chosen, stacklevel=3)  # at run_lottery's caller
                warn_diverged(lvl, chosen, stacklevel=3)
            records.extend(new)
            store.write_results(identity, records)
    return store, records


def run_identity(config: LotteryConfig, devices) -> dict[str, Any]:
    """What names a run: the config and the runtime settings that change its numbers.

    Returns:
      ``config.to_dict()`` plus ``"runtime": {"x64", "devices", "platform"}``: whether
      ``jax_enable_x64`` is on, how many devices the seeds are spread over, and their
      platform. ``run_lottery`` opens the run directory with it and records it in
      config.json and results.json.
    """
    devices = tuple(devices)
    runtime = {
        "x64": bool(jax.config.jax_enable_x64),
        "devices": len(devices),
        "platform": devices[0].platform,
    }
    return {**config.to_dict(), RUNTIME_KEY: runtime}


class Experiment:
    """The pieces one lottery run is made of: data, model, optimizers, pruners, keys."""

    def __init__(self, config: LotteryConfig, devices=None):
        self.config = c = config
        self.devices = tuple(jax.devices() if devices is None else devices)
        if not self.devices:
            raise ValueError("run_lottery: devices is empty; pass at least one device")
        data = data_lib.load(c.dataset)
        self.model = _model(c.model, tuple(data.input_shape), data.num_classes)
        params, _ = jax.eval_shape(self.model.init, jax.random.key(0))
        self.template = params
        check_fits(c, data, dense_mask(params))
        self.data = data_lib.with_validation(data, c.val_size, seed=c.seed)
        base = jax.random.key(c.seed)
        seeds = jnp.arange(c.seeds)
        self.init_keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.fold_in(base, 0), s))(
            seeds
        )
        self.data_keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.fold_in(base, 1), s))(
            seeds
        )
        self.control_key = jax.random.fold_in(base, 2)
        self.pruner, self.one_shot_pruner = _pruners(c)
        # One jitted batched init per run: a fresh jax.jit(jax.vmap(...)) at every call
        # would miss jit's cache and recompile at every level.
        self.init_batch = init_seeds(self.model)

    # -- one level -------------------------------------------------------------------

    def run_level(self, level: int, prev: dict | None, show_progress: bool):
        c = self.config
        if level == 0:
            return self._dense(show_progress)
        k = c.rewind
        if c.one_shot:
            masks = [self._prune_to(prev, s) for s in c.one_shot]
        else:
            masks = [self._prune_step(prev["trained"], prev["mask"])]
        batch, names, per_mask_state = [], [], []
        for i, mask in enumerate(masks):
            lvl = level + i
            starts = self._starts(prev, mask, lvl)
            for variant in c.variants:
                batch.append(starts[variant])
                names.append((lvl, variant))
            per_mask_state.append(starts)
        params = _concat([b[0] for b in batch])
        model_state = _concat([b[1] for b in batch])
        mask = _concat([b[2] for b in batch])
        data_keys = jnp.concatenate([self.data_keys] * len(batch))
        result = self._train(
            self._optimizer(offset=k, final=c.rewind_mode == "finetune"),
            data_keys,
            steps=c.steps - k,
            start_step=k,
            params=params,
            model_state=model_state,
            mask=mask,
            mask_per_seed=True,
            show_progress=show_progress,
        )
        records = []
        for j, (lvl, variant) in enumerate(names):
            sl = slice(j * c.seeds, (j + 1) * c.seeds)
            part = jax.tree.map(lambda x, sl=sl: x[sl], result)
            records += self._records(lvl, variant, part, batch[j][2])
        # IMP continues from the ticket of the (last) level.
        last = per_mask_state[-1]
        j = names.index((level + len(masks) - 1, "ticket"))
        sl = slice(j * c.seeds, (j + 1) * c.seeds)
        state = dict(prev)
        state.update(
            mask=last["ticket"][2],
            trained=jax.tree.map(lambda x: x[sl], result.params),
            trained_state=jax.tree.map(lambda x: x[sl], result.model_state),
            random_mask=last.get("random_prune", (None, None, prev.get("random_mask")))[2],
        )
        return state, records

    def _dense(self, show_progress: bool):
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
        mask = _stack_seeds(dense_mask(self.template), c.seeds)
        rewind_params, rewind_state = result.snapshots[0]
        state = {
            "init": params,
            "init_state": model_state,
            "rewind": rewind_params,
            "rewind_state": rewind_state,
            "mask": mask,
            "random_mask": mask,
            "trained": result.params,
            "trained_state": result.model_state,
        }
        return state, self._records(0, "ticket", result, mask)

    def _train(self, optimizer, data_keys, **kwargs):
        """Trains the stacked runs (params given), spread over ``self.devices``; the
        result comes back to the host as NumPy arrays."""
        devices = self.devices[: data_keys.shape[0]]
        mesh = seed_mesh(devices) if len(devices) > 1 else None
        c = self.config
        with warnings.catch_warnings():
            # run_lottery warns naming level, variant and seed (the engine's warning
            # would name positions in the level's batch of runs).
            warnings.simplefilter("ignore", DivergenceWarning)
            result = train_seeds(
                self.model,
                self.data,
                optimizer,
                init_keys=data_keys,
                data_keys=data_keys,
                batch_size=c.batch_size,
                eval_every=c.eval_every,
                mesh=mesh,
                **kwargs,
            )
        # Level state lives on the host: it is checkpointed anyway, and slicing or
        # stacking it there costs no compilation (each eager JAX op compiles per shape).
        return jax.device_get(result)

    def _starts(self, prev: dict, mask, level: int) -> dict[str, tuple]:
        """(params, model_state, mask) per variant, each stacked over seeds."""
        c = self.config
        if c.rewind_mode == "weights":
            ticket = (prev["rewind"], prev["rewind_state"], mask)
        else:
            ticket = (prev["trained"], prev["trained_state"], mask)
        starts = {"ticket": ticket}
        key = jax.random.fold_in(self.control_key, level)
        keys = jax.random.split(key, 3 * c.seeds).reshape(3, c.seeds)
        if "reinit" in c.controls:
            fresh, fresh_state = jax.device_get(self.init_batch(keys[0]))
            starts["reinit"] = (fresh, fresh_state, mask)
        if "random_prune" in c.controls:
            rand = controls.thin_to_counts(keys[1], prev["random_mask"], mask)
            starts["random_prune"] = (ticket[0], ticket[1], rand)
        if "shuffle" in c.controls:
            starts["shuffle"] = (ticket[0], ticket[1], controls.shuffle(keys[2], mask))
        return starts

    # -- pruning -----------------------------------------------------------------------

    def _prune_step(self, trained, mask):
        prune = _jit_prune(self.pruner, "fraction")
        return jax.device_get(prune(trained, mask, self.config.prune_fraction))

    def _prune_to(self, prev, sparsity: float):
        dense = _stack_seeds(dense_mask(self.template), self.config.seeds)
        prune = _jit_prune(self.one_shot_pruner, "sparsity")
        return jax.device_get(prune(prev["trained"], dense, sparsity))

    # -- optimizer -----------------------------------------------------------------------

    def _optimizer(self, offset: int = 0, final: bool = False):
        return make_optimizer(self.config, offset=offset, final=final)

    # -- records and checkpoints ---------------------------------------------------------

    def _records(self, level: int, variant: str, result, mask) -> list[Record]:
        """Records of one variant's seeds from its (host) ``TrainResult`` slice."""
        h, diverged, at = result.history, result.diverged, result.diverged_step
        return level_records(level, variant, h, mask, diverged, at, self.config.seeds)

    def pack(self, state: dict) -> dict[str, Any]:
        flat = {}
        for name, tree in state.items():
            flat.update(flatten_tree(tree, name))
        return flat

    def unpack(self, flat: dict[str, Any]) -> dict:
        model_state = jax.eval_shape(self.model.init, jax.random.key(0))[1]
        mask = dense_mask(self.template)
        templates = {
            "init": self.template,
            "rewind": self.template,
            "trained": self.template,
            "init_state": model_state,
            "rewind_state": model_state,
            "trained_state": model_state,
            "mask": mask,
            "random_mask": mask,
        }
        return {
            name: jax.tree.map(np.asarray, unflatten_into(t, flat, name))
            for name, t in templates.items()
        }


@functools.lru_cache(maxsize=8)
def _model(name: str, input_shape: tuple[int, ...], num_classes: int):
    # One Model object per architecture, so the train programs cached on it (and on the
    # optimizer) are reused by later runs in the same process instead of recompiled.
    return models_lib.get(name, input_shape=input_shape, num_classes=num_classes)


def _pruners(c: LotteryConfig):
    """IMP's pruner and the one-shot pruner. One-shot: a requested sparsity is met exactly
    in total; layer rates become relative rates (global allocation is one threshold, exact
    already)."""
    scale = dict(c.layer_rates) or None
    imp_pruner = magnitude_pruner(c.allocation, scale=scale, min_keep=c.min_keep)
    if c.allocation != "layerwise":
        return imp_pruner, imp_pruner
    exact = layerwise(scale, exact_total=True)
    one_shot = make_pruner(criteria.magnitude, exact, min_keep=c.min_keep)
    return imp_pruner, one_shot


@functools.lru_cache(maxsize=16)
def _jit_prune(pruner, kind: str):
    # The amount is traced, so one compiled program serves every level and every one-shot
    # sparsity (a constant amount would compile once per value).
    return jax.jit(jax.vmap(lambda p, m, a: pruner(p, m, **{kind: a}), in_axes=(0, 0, None)))


def _stack_seeds(tree, n: int):
    return jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (n, *np.shape(x))), tree)


def _concat(trees):
    return jax.tree.map(
        lambda *xs: None if xs[0] is None else np.concatenate(xs), *trees, is_leaf=_is_none
    )
