"""Ticket transfer as a resumable workflow: one phase per sparsity, seeds vmapped.

Phase 0 trains the dense network on the source task and on the target task from the same
inits (key stream 0; stream 1 the data order). Phase ``k`` prunes the trained source
network by global magnitude to the ``k``-th sparsity (exact count, per seed) and trains on
the TARGET task, in one ``train_seeds`` program (``mask_per_seed``), the configured
variants:

* ``transfer``: the source mask on the init (the source ticket, rewound);
* ``native``: the target network's own magnitude ticket on the init (the reference a
  transferred ticket is measured against);
* ``reinit``: the source mask on a fresh init (key stream 2; ``jaxticket.at_init.reinit``'s
  control);
* ``shuffle``: the source mask shuffled within each layer (same per-layer counts; key
  stream 3; ``jaxticket.at_init.layerwise_shuffle``) on the init.

Records carry ``overlap``: the Jaccard index of the source mask and the native one.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxticket import models as models_lib
from jaxticket.at_init.sanity import layerwise_shuffle
from jaxticket.lottery.optimizer import make_optimizer
from jaxticket.lottery.state import concat, seed_slice, stack_seeds
from jaxticket.masks import dense_mask, jaccard
from jaxticket.scratch.run import prune_program
from jaxticket.train import train_seeds
from jaxticket.train.runner import init_seeds
from jaxticket.transfer.config import TransferConfig
from jaxticket.transfer.tasks import check_same_shapes, task_data
from jaxticket.workflow.config import ConfigError
from jaxticket.workflow.records import Record, seed_records
from jaxticket.workflow.run import Workflow, run_workflow
from jaxticket.workflow.store import RunStore, flatten_tree, unflatten_into
from jaxticket.workflow.training import check_fits, resolve_devices, seed_keys, train_on_devices

__all__ = ["TRANSFER", "TransferState", "TransferTrainer", "run_transfer"]


class TransferState(NamedTuple):
    """What a finished phase keeps (host arrays, stacked over seeds).

    Attributes:
      source, target: phase 0's trained dense params on each task.
      masks: the phase's masks stacked over variants (phase 0: the dense mask).
    """

    source: Any
    target: Any
    masks: Any


def run_transfer(
    config: TransferConfig,
    *,
    out_dir: str = "runs",
    show_progress: bool = False,
    log=None,
    devices=None,
) -> tuple[RunStore, list[Record]]:
    """Runs (or resumes) the transfer experiment ``config`` under ``out_dir``.

    Returns:
      The store and the records: phase 0 ``source_dense`` and ``target_dense``, then per
      sparsity each variant; keys ``variant``, ``task`` (``source``/``target``),
      ``sparsity``, ``phase``, ``seed``, ``overlap`` (phases >= 1), the accuracies,
      ``remaining``, ``layer_remaining``, ``collapsed``, ``diverged``, ``history``.

    Raises:
      ConfigError: the tasks' parameter shapes differ (the message names the leaf), or
        the config does not fit the model or the data (before anything trains).
    """
    return run_workflow(
        TRANSFER, config, out_dir=out_dir, show_progress=show_progress, log=log, devices=devices
    )


class TransferTrainer:
    """The ``PhaseRunner`` of the transfer workflow: both tasks, the model, keys, devices."""

    def __init__(self, config: TransferConfig, devices=None):
        self.config = c = config
        self.devices = resolve_devices(devices, "run_transfer")
        if c.model not in models_lib.names():
            valid = ", ".join(models_lib.names())
            raise ConfigError("model", f"unknown model {c.model!r}; valid: {valid}")
        self.models, self.data, templates = {}, {}, {}
        for which in ("source", "target"):
            try:
                ds = task_data(c, which)
            except ValueError as err:
                raise ConfigError(f"{which}_classes", str(err)) from None
            options = {"hidden": c.hidden} if c.hidden else {}
            model = models_lib.get(
                c.model, input_shape=tuple(ds.input_shape), num_classes=ds.num_classes, **options
            )
            params, _ = jax.eval_shape(model.init, jax.random.key(0))
            check_fits(c, ds, dense_mask(params))
            self.models[which], templates[which] = model, params
            self.data[which] = _with_validation(ds, c)
        try:
            check_same_shapes(templates["source"], templates["target"])
        except ValueError as err:
            raise ConfigError("target_classes", str(err)) from None
        self.model = self.models["target"]
        self.template = templates["target"]
        self.init_keys, self.data_keys, self.fresh_keys, self.shuffle_keys = (
            seed_keys(c.seed, stream, c.seeds) for stream in range(4)
        )
        self.dense = stack_seeds(dense_mask(self.template), c.seeds)
        self.prune = prune_program("global", c.min_keep)

    def run_phase(
        self, phase: int, state: TransferState | None, show_progress: bool
    ) -> tuple[TransferState, list[Record]]:
        """Phase 0: both dense networks; phase ``k``: the variants at the ``k``-th
        sparsity (``state`` holds phase 0's trained networks)."""
        c = self.config
        params, model_state = self._init(self.init_keys)
        if phase == 0:
            records, trained = [], {}
            for which in ("source", "target"):
                result = self._train(which, params, model_state, self.dense, show_progress)
                trained[which] = jax.tree.map(np.asarray, result.params)
                records += self._records(result, self.dense, [f"{which}_dense"], 0, 0.0, which)
            return TransferState(trained["source"], trained["target"], self.dense), records
        target = c.sparsities[phase - 1]
        source_mask = self._pruned(state.source, target)
        native = self._pruned(state.target, target)
        starts = {
            "transfer": (params, source_mask),
            "native": (params, native),
            "shuffle": (params, jax.device_get(layerwise_shuffle(self.shuffle_keys, source_mask))),
        }
        if "reinit" in c.variants:
            starts["reinit"] = (self._init(self.fresh_keys)[0], source_mask)
        names = list(c.variants)
        batch_params = concat([starts[v][0] for v in names])
        batch_mask = concat([jax.tree.map(np.asarray, starts[v][1]) for v in names])
        batch_state = concat([model_state] * len(names))
        result = self._train("target", batch_params, batch_state, batch_mask, show_progress)
        records = self._records(result, batch_mask, names, phase, target, "target")
        overlap = [float(jaccard(_seed(source_mask, s), _seed(native, s))) for s in range(c.seeds)]
        for r in records:
            r["overlap"] = overlap[r["seed"]]
        return state._replace(masks=batch_mask), records

    def _init(self, keys):
        return jax.device_get(init_seeds(self.model)(keys))

    def _pruned(self, trained, sparsity: float):
        mask = self.prune(trained, self.dense, sparsity)
        return jax.tree.map(np.asarray, jax.device_get(mask))

    def _train(self, which, params, model_state, mask, show_progress):
        c = self.config
        runs = jax.tree.leaves(params)[0].shape[0] // c.seeds
        data_keys = jnp.concatenate([self.data_keys] * runs)
        return train_on_devices(
            train_seeds,
            self.models[which],
            self.data[which],
            make_optimizer(c),
            self.devices,
            init_keys=data_keys,  # unused: params are given
            data_keys=data_keys,
            steps=c.steps,
            batch_size=c.batch_size,
            eval_every=c.eval_every,
            params=params,
            model_state=model_state,
            mask=mask,
            mask_per_seed=True,
            show_progress=show_progress,
        )

    def _records(self, result, mask, names, phase, sparsity, task) -> list[Record]:
        c = self.config
        records = []
        for j, variant in enumerate(names):
            records += seed_records(
                seed_slice(result, j, c.seeds),
                seed_slice(mask, j, c.seeds),
                c.seeds,
                variant=variant,
                task=task,
                sparsity=sparsity,
                phase=phase,
            )
        return records

    def pack(self, state: TransferState) -> dict[str, Any]:
        """The state as flat named arrays."""
        flat = {}
        for name, tree in state._asdict().items():
            flat.update(flatten_tree(tree, name))
        return flat

    def unpack(self, flat: dict[str, Any]) -> TransferState:
        """Inverse of :meth:`pack` (NumPy leaves)."""
        templates = TransferState(self.template, self.template, dense_mask(self.template))
        return TransferState(
            **{
                name: jax.tree.map(np.asarray, unflatten_into(t, flat, name))
                for name, t in templates._asdict().items()
            }
        )


def _seed(tree, s: int):
    """Seed ``s`` of a mask stacked over seeds (``None`` leaves kept)."""
    return jax.tree.map(lambda m: None if m is None else m[s], tree, is_leaf=lambda x: x is None)


def _with_validation(ds, c):
    from jaxticket.data import with_validation

    return with_validation(ds, c.val_size, seed=c.seed)


# The workflow: run directory transfer-<model>-<dataset>-<digest>; phase 0 the dense
# networks, then one phase per sparsity.
TRANSFER = Workflow(
    name=lambda c: f"transfer-{c.model}-{c.dataset}",
    phases=lambda c: range(len(c.sparsities) + 1),
    setup=TransferTrainer,
    group_key="phase",
)
