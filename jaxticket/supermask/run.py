"""Supermasks as a resumable workflow: the dense reference, then one phase per k.

Phase 0 trains the dense network (every seed from its own init, the config's optimizer):
the reference line of the plots and the weights the Lottery Jackpots search. Phase ``j``
(k = ``ks[j - 1]``) wraps the model with ``supermask_model`` and trains only its scores
(``freeze_weights`` of the same optimizer) with the ordinary engine, every run of the
phase in one ``train_seeds`` program (see ``jaxticket.supermask.config`` for what each
variant fixes and searches). A phase keeps the dense params and state (carried from phase
0), the final scores of every run and the mask each run ends with.

Key streams of ``config.seed``: 0 inits, 1 data order, 2 the uniform scores, 3 the
saliency masks (SNIP's batch). Every phase uses the same keys: the ks differ in k only.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxticket.lottery.optimizer import make_optimizer
from jaxticket.lottery.state import concat, seed_slice, stack_seeds
from jaxticket.masks import dense_mask
from jaxticket.supermask.config import SupermaskConfig, run_names, saliency, score_optimizer
from jaxticket.supermask.model import freeze_weights, supermask_model, wrapped_mask
from jaxticket.supermask.scores import (
    edge_popup_mask,
    magnitude_scores,
    signed_constant,
    uniform_scores,
)
from jaxticket.train import train_seeds
from jaxticket.train.runner import init_seeds
from jaxticket.workflow.records import Record, seed_records
from jaxticket.workflow.run import Workflow, run_workflow
from jaxticket.workflow.setup import model_and_data
from jaxticket.workflow.store import RunStore, flatten_tree, unflatten_into
from jaxticket.workflow.training import resolve_devices, seed_keys, train_on_devices

__all__ = ["SUPERMASK", "SupermaskPhase", "SupermaskTrainer", "run_supermask"]


class SupermaskPhase(NamedTuple):
    """What a finished phase keeps (host arrays).

    Attributes:
      dense: the trained dense params, stacked over seeds (phase 0's, carried on).
      dense_state: their model state (BatchNorm statistics; ``{}`` for none).
      scores: the final scores of every run of the phase, stacked over runs in
        ``run_names`` order (``None`` in phase 0).
      masks: the mask every run ends with, stacked likewise (``None`` in phase 0).
    """

    dense: Any
    dense_state: Any
    scores: Any = None
    masks: Any = None


def run_supermask(
    config: SupermaskConfig,
    *,
    out_dir: str = "runs",
    show_progress: bool = False,
    log=None,
    devices=None,
) -> tuple[RunStore, list[Record]]:
    """Runs (or resumes) the supermask experiment ``config`` under ``out_dir``.

    Args:
      config: the experiment.
      out_dir: folder holding run directories; this run's is
        ``supermask-<variant>-<model>-<dataset>-<digest>``.
      show_progress: progress bars.
      log: called with one line per event (run directory, each phase loaded or trained).
      devices: the devices the runs are spread over (default: every device of JAX's
        default backend).

    Returns:
      The run's store and the records, one per (phase, run, seed): ``method`` (the
      variant), ``k`` (1.0 for the dense reference), ``phase``, ``variant`` (``dense``,
      ``edge_popup``, ``jackpot``, ``scratch`` or ``hidenseek``), ``seed``, the
      accuracies, ``start_accuracy`` (test accuracy before training: for ``jackpot`` the
      magnitude mask of the trained network), ``remaining``, ``layer_remaining``,
      ``collapsed``, ``diverged``, ``history``; ``hidenseek`` records also ``flipped``
      (the fraction of surviving weights whose sign the supermask flipped).

    Raises:
      ConfigError: the config does not fit the model or the data (before anything trains).
    """
    return run_workflow(
        SUPERMASK, config, out_dir=out_dir, show_progress=show_progress, log=log, devices=devices
    )


class SupermaskTrainer:
    """The ``PhaseRunner`` of the supermask workflow: data, model, keys, devices."""

    def __init__(self, config: SupermaskConfig, devices=None):
        self.config = c = config
        self.devices = resolve_devices(devices, "run_supermask")
        self.model, self.template, self.state_template, self.data = model_and_data(
            c, hidden=c.hidden
        )
        self.init_keys, self.data_keys, self.score_keys, self.saliency_keys = (
            seed_keys(c.seed, stream, c.seeds) for stream in range(4)
        )
        self.init_batch = init_seeds(self.model)

    def run_phase(
        self, phase: int, state: SupermaskPhase | None, show_progress: bool
    ) -> tuple[SupermaskPhase, list[Record]]:
        """Phase 0 trains the dense reference; phase ``j`` searches masks at ``ks[j-1]``
        over fixed weights (the dense params come from ``state``)."""
        if phase == 0:
            return self._dense(show_progress)
        c = self.config
        k = c.ks[phase - 1]
        names = run_names(c)
        params, model_state = jax.device_get(self.init_batch(self.init_keys))
        mask = None
        if c.variant == "jackpot":
            weights, model_state = state.dense, state.dense_state
            scores = [_vmapped(magnitude_scores)(weights), self._uniform(weights)]
        else:
            weights = params if c.weight_init == "init" else _vmapped(signed_constant)(params)
            scores = [self._uniform(weights)]
        if c.variant == "hidenseek":
            # Saliency of the init itself: on the signed constant every weight of a layer
            # ties, and SynFlow would keep whole units by position.
            mask = self._saliency_masks(params, model_state, 1.0 - k)
            scores = [_vmapped(magnitude_scores)(weights)]
            model = supermask_model(self.model, kind="sign")
        else:
            model = supermask_model(self.model, k)
        runs = len(names)
        batch = {"scores": concat(jax.device_get(scores)), "weights": concat([weights] * runs)}
        result = train_on_devices(
            train_seeds,
            model,
            self.data,
            freeze_weights(score_optimizer(c)),
            self.devices,
            init_keys=jnp.concatenate([self.init_keys] * runs),
            data_keys=jnp.concatenate([self.data_keys] * runs),
            steps=c.steps,
            batch_size=c.batch_size,
            eval_every=c.eval_every,
            params=batch,
            model_state=concat([model_state] * runs),
            mask=None if mask is None else wrapped_mask(mask),
            mask_per_seed=mask is not None,
            show_progress=show_progress,
        )
        final_scores = jax.tree.map(np.asarray, result.params["scores"])
        if mask is None:
            masks = jax.device_get(jax.jit(jax.vmap(lambda s: edge_popup_mask(s, k)))(final_scores))
        else:
            masks = mask
        records = []
        for j, name in enumerate(names):
            part = seed_slice(result, j, c.seeds)
            chosen = seed_slice(masks, j, c.seeds)
            new = seed_records(
                part, chosen, c.seeds, method=c.variant, k=k, phase=phase, variant=name
            )
            for r in new:
                r["start_accuracy"] = r["history"]["test_accuracy"][0]
            if name == "hidenseek":
                _add_flipped(new, seed_slice(final_scores, j, c.seeds), chosen)
            records += new
        if c.variant == "jackpot":
            add_steps_to_scratch(records)
        return SupermaskPhase(state.dense, state.dense_state, final_scores, masks), records

    def _dense(self, show_progress: bool) -> tuple[SupermaskPhase, list[Record]]:
        """The dense reference: every seed trained from its init with the config's optimizer."""
        c = self.config
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
            show_progress=show_progress,
        )
        full = stack_seeds(dense_mask(self.template), c.seeds)
        records = seed_records(
            result, full, c.seeds, method=c.variant, k=1.0, phase=0, variant="dense"
        )
        for r in records:
            r["start_accuracy"] = r["history"]["test_accuracy"][0]
        dense = jax.tree.map(np.asarray, result.params)
        return SupermaskPhase(dense, jax.tree.map(np.asarray, result.model_state)), records

    def _uniform(self, weights):
        """Every seed's uniform scores (its score key), one vmapped program."""
        return jax.device_get(jax.jit(jax.vmap(uniform_scores))(self.score_keys, weights))

    def _saliency_masks(self, weights, model_state, sparsity: float):
        """Every seed's at-init mask of its init (host arrays), one vmapped program."""
        method = saliency(self.config)

        def draw(p, s, key):
            return method.mask(self.model, p, s, self.data, key, sparsity)

        return jax.device_get(jax.vmap(draw)(weights, model_state, self.saliency_keys))

    def pack(self, state: SupermaskPhase) -> dict[str, Any]:
        """The state as flat named arrays (``dense/``, ``dense_state/``, ``scores/``,
        ``masks/``)."""
        flat = {
            **flatten_tree(state.dense, "dense"),
            **flatten_tree(state.dense_state, "dense_state"),
        }
        if state.scores is not None:
            flat |= {**flatten_tree(state.scores, "scores"), **flatten_tree(state.masks, "masks")}
        return flat

    def unpack(self, flat: dict[str, Any]) -> SupermaskPhase:
        """Inverse of :meth:`pack` (NumPy leaves)."""
        host = lambda t: jax.tree.map(np.asarray, t)  # noqa: E731
        dense = host(unflatten_into(self.template, flat, "dense"))
        dense_state = host(unflatten_into(self.state_template, flat, "dense_state"))
        if not any(name.startswith("scores/") for name in flat):
            return SupermaskPhase(dense, dense_state)
        scored = dense_mask(self.template)
        scores = host(unflatten_into(scored, flat, "scores"))
        return SupermaskPhase(
            dense, dense_state, scores, host(unflatten_into(scored, flat, "masks"))
        )


def add_steps_to_scratch(records: list[Record]) -> None:
    """``steps_to_scratch`` on every ``jackpot`` record: the first evaluated step at which
    its test accuracy reaches the final test accuracy of the ``scratch`` search of the
    same seed (``None`` when it never does): the search cost the magnitude start needs."""
    target = {r["seed"]: r["test_accuracy_final"] for r in records if r["variant"] == "scratch"}
    for r in records:
        if r["variant"] != "jackpot":
            continue
        h = r["history"]
        reached = [
            t for t, a in zip(h["step"], h["test_accuracy"], strict=True) if a >= target[r["seed"]]
        ]
        r["steps_to_scratch"] = int(reached[0]) if reached else None


def _vmapped(fn):
    """``fn(params)`` over the seed axis, jitted (host arrays out)."""
    return lambda tree: jax.device_get(jax.jit(jax.vmap(fn))(tree))


def _add_flipped(records: list[Record], scores, mask) -> None:
    """``flipped``: the fraction of each seed's surviving weights with a negative score
    (the sign supermask flipped their sign)."""
    neg = sum(
        np.sum((np.asarray(s) < 0) & np.asarray(m), axis=tuple(range(1, np.ndim(s))))
        for s, m in zip(jax.tree.leaves(scores), jax.tree.leaves(mask), strict=True)
    )
    alive = sum(
        np.sum(np.asarray(m), axis=tuple(range(1, np.ndim(m)))) for m in jax.tree.leaves(mask)
    )
    for s, r in enumerate(records):
        r["flipped"] = float(neg[s] / max(int(alive[s]), 1))


# The workflow: run directory supermask-<variant>-<model>-<dataset>-<digest>, phase 0 the
# dense reference, then one phase per k.
SUPERMASK = Workflow(
    name=lambda c: f"supermask-{c.variant}-{c.model}-{c.dataset}",
    phases=lambda c: range(len(c.ks) + 1),
    setup=SupermaskTrainer,
    group_key="phase",
)
