"""Grokking tickets as a resumable workflow: two phases, seeds vmapped.

Phase 0 trains the dense network of every seed from the inits of key stream 0 (stream 1
the data order; full batch makes it immaterial) and reads the memorization point off its
history: the first evaluation at which every seed's train accuracy reaches
``config.memorized`` (:func:`~jaxticket.grokking.metrics.memorization_index`; one step for
all seeds, so one program recomputes it).

Phase 1 builds every variant from the same inits and trains them all in ONE
``train_seeds`` program (``mask_per_seed``):

* ``grokking_ticket``: global magnitude pruning of phase 0's trained (generalized) weights
  at ``sparsity``, rewound to the init;
* ``memorization_ticket``: the same pruning of the weights at the memorization step (the
  dense run retrained from its init for that many steps), rewound to the init;
* ``random``, ``snip``, ``grasp``, ``synflow``: ``jaxticket.at_init`` masks of the init
  at ``sparsity`` (key stream 2);
* ``dense_l1``, ``dense_l2``: the dense init with its prunable weights scaled, per seed,
  to the grokking ticket's L1 / L2 norm (the paper's norm control), trained dense.

Every record carries ``steps_to_threshold`` (the step test accuracy first reaches
``threshold``, ``None`` when it never does) and its history has ``train_accuracy`` (the
training pairs are evaluated as the validation split).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxticket.grokking.config import AT_INIT_VARIANTS, NORM_VARIANTS, GrokkingConfig
from jaxticket.grokking.metrics import memorization_index, norm_matched, steps_to_accuracy
from jaxticket.grokking.setup import at_init_masks, modular_task, task_model
from jaxticket.lottery.optimizer import make_optimizer
from jaxticket.lottery.state import concat, seed_slice, stack_seeds
from jaxticket.masks import dense_mask
from jaxticket.scratch.run import prune_program
from jaxticket.train import train_seeds
from jaxticket.train.runner import init_seeds
from jaxticket.workflow.records import Record, seed_records
from jaxticket.workflow.run import Workflow, run_workflow
from jaxticket.workflow.store import RunStore, flatten_tree, unflatten_into
from jaxticket.workflow.training import resolve_devices, seed_keys, train_on_devices

__all__ = ["GROKKING", "GrokkingState", "GrokkingTrainer", "run_grokking"]


class GrokkingState(NamedTuple):
    """What a finished phase keeps (host arrays, stacked over seeds).

    Attributes:
      trained: phase 0's trained dense params.
      memorization_step: the memorization step (``-1`` when no evaluation had every seed
        memorized), a 0-d array.
      masks: phase 1: the mask of every variant stacked over runs in ``config.variants``
        order; phase 0: the dense mask.
    """

    trained: Any
    memorization_step: np.ndarray
    masks: Any


def run_grokking(
    config: GrokkingConfig,
    *,
    out_dir: str = "runs",
    show_progress: bool = False,
    log=None,
    devices=None,
) -> tuple[RunStore, list[Record]]:
    """Runs (or resumes) the grokking-tickets experiment ``config`` under ``out_dir``.

    Args:
      config: the experiment.
      out_dir: folder holding run directories; this run's is
        ``grokking-<model>-<task>-<digest>``.
      show_progress: progress bars.
      log: called with one line per event.
      devices: the devices the stacked runs are spread over (default: JAX's default
        backend's).

    Returns:
      The store and the records, one per (variant, seed): phase 0 ``dense``, then phase 1
      each of ``config.variants``; keys ``variant``, ``phase``, ``sparsity``, ``seed``,
      ``steps_to_threshold``, ``memorization_step``, the accuracies, ``remaining``,
      ``layer_remaining``, ``collapsed``, ``diverged`` and ``history``.

    Raises:
      ConfigError: the config does not fit the model or the task (before training).
      RuntimeError: the memorization ticket is asked for but no evaluation of the dense
        run had every seed memorized (raise ``steps`` or lower ``memorized``).
    """
    return run_workflow(
        GROKKING, config, out_dir=out_dir, show_progress=show_progress, log=log, devices=devices
    )


class GrokkingTrainer:
    """The ``PhaseRunner`` of the grokking workflow: task, model, keys, devices."""

    def __init__(self, config: GrokkingConfig, devices=None):
        self.config = c = config
        self.devices = resolve_devices(devices, "run_grokking")
        self.data = modular_task(c)
        self.model = task_model(c, self.data)
        self.template, self.state_template = jax.eval_shape(self.model.init, jax.random.key(0))
        self.batch_size = c.batch_size or int(self.data.y_train.shape[0])
        self.init_keys, self.data_keys, self.mask_keys = (
            seed_keys(c.seed, stream, c.seeds) for stream in range(3)
        )
        self.dense = stack_seeds(dense_mask(self.template), c.seeds)
        self.prune = prune_program("global", c.min_keep)

    def init(self):
        """Every seed's init ``(params, model_state)``, host arrays."""
        return jax.device_get(init_seeds(self.model)(self.init_keys))

    def run_phase(
        self, phase: int, state: GrokkingState | None, show_progress: bool
    ) -> tuple[GrokkingState, list[Record]]:
        """Phase 0: the dense run and its memorization point; phase 1: the variants."""
        if phase == 0:
            return self._dense(show_progress)
        return self._variants(state, show_progress)

    def _dense(self, show_progress):
        c = self.config
        params, model_state = self.init()
        result = self._train(params, model_state, self.dense, c.steps, show_progress)
        index = memorization_index(result.history["val_accuracy"], c.memorized)
        step = -1 if index is None else int(result.history["step"][0][index])
        records = self._records(result, self.dense, ("dense",), 0, step)
        trained = jax.tree.map(np.asarray, result.params)
        return GrokkingState(trained, np.asarray(step, np.int64), self.dense), records

    def _variants(self, state: GrokkingState, show_progress):
        c = self.config
        params, model_state = self.init()
        step = int(state.memorization_step)
        ticket = self._prune(state.trained)
        starts = {}
        for variant in c.variants:
            if variant == "grokking_ticket":
                starts[variant] = (params, ticket)
            elif variant == "memorization_ticket":
                starts[variant] = (params, self._prune(self._memorized(step)))
            elif variant in AT_INIT_VARIANTS:
                masks = at_init_masks(
                    variant, c, self.model, params, model_state, self.data, self.mask_keys
                )
                starts[variant] = (params, masks)
            else:
                order = NORM_VARIANTS[variant]
                starts[variant] = (norm_matched(params, self.dense, ticket, order), self.dense)
        names = tuple(c.variants)
        batch_params = concat([starts[v][0] for v in names])
        batch_mask = concat([jax.tree.map(np.asarray, starts[v][1]) for v in names])
        batch_state = concat([model_state] * len(names))
        result = self._train(batch_params, batch_state, batch_mask, c.steps, show_progress)
        records = self._records(result, batch_mask, names, 1, step)
        return state._replace(masks=batch_mask), records

    def _memorized(self, step: int):
        """The dense weights at the memorization step: the dense run retrained from its
        init with its optimizer (the full run's schedule) for ``step`` steps."""
        if step < 0:
            raise RuntimeError(
                f"memorization_ticket: no evaluation of the dense run had every seed's train "
                f"accuracy >= memorized={self.config.memorized}; raise steps or lower memorized"
            )
        params, model_state = self.init()
        if step == 0:
            return params
        return self._train(params, model_state, self.dense, step, False).params

    def _prune(self, weights):
        """Global magnitude pruning of ``weights`` (stacked over seeds) at the sparsity."""
        mask = self.prune(weights, self.dense, self.config.sparsity)
        return jax.tree.map(np.asarray, jax.device_get(mask))

    def _train(self, params, model_state, mask, steps: int, show_progress: bool):
        c = self.config
        runs = jax.tree.leaves(params)[0].shape[0] // c.seeds
        data_keys = jnp.concatenate([self.data_keys] * runs)
        return train_on_devices(
            train_seeds,
            self.model,
            self.data,
            make_optimizer(c),
            self.devices,
            init_keys=data_keys,  # unused: params are given
            data_keys=data_keys,
            steps=steps,
            batch_size=self.batch_size,
            eval_every=min(c.eval_every, steps),
            params=params,
            model_state=model_state,
            mask=mask,
            mask_per_seed=True,
            show_progress=show_progress,
        )

    def _records(self, result, mask, names, phase: int, step: int) -> list[Record]:
        c = self.config
        records = []
        for j, variant in enumerate(names):
            part = seed_slice(result, j, c.seeds)
            chosen = seed_records(
                part,
                seed_slice(mask, j, c.seeds),
                c.seeds,
                variant=variant,
                phase=phase,
                sparsity=0.0 if variant == "dense" or variant in NORM_VARIANTS else c.sparsity,
            )
            for r in chosen:
                h = r["history"]
                h["train_accuracy"] = h.pop("val_accuracy")
                h["train_eval_loss"] = h.pop("val_loss")
                r["steps_to_threshold"] = steps_to_accuracy(h, c.threshold)
                r["memorization_step"] = None if step < 0 else step
            records += chosen
        return records

    def pack(self, state: GrokkingState) -> dict[str, Any]:
        """The state as flat named arrays."""
        return {
            **flatten_tree(state.trained, "trained"),
            **flatten_tree(state.masks, "masks"),
            "memorization_step": np.asarray(state.memorization_step),
        }

    def unpack(self, flat: dict[str, Any]) -> GrokkingState:
        """Inverse of :meth:`pack` (NumPy leaves)."""
        trained = unflatten_into(self.template, flat, "trained")
        masks = unflatten_into(dense_mask(self.template), flat, "masks")
        return GrokkingState(
            jax.tree.map(np.asarray, trained),
            np.asarray(flat["memorization_step"]),
            jax.tree.map(np.asarray, masks),
        )


def _name(c: GrokkingConfig) -> str:
    from jaxticket.data.modular import OPS

    return f"grokking-{c.model}-modular_{OPS[c.op]}_{c.p}"


# The workflow: run directory grokking-<model>-modular_<op>_<p>-<digest>; phase 0 dense,
# phase 1 every variant.
GROKKING = Workflow(
    name=_name,
    phases=lambda c: range(2),
    setup=GrokkingTrainer,
    group_key="phase",
)
