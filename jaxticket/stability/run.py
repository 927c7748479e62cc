"""The instability analysis (Frankle et al. 2020) as a resumable workflow.

Phases of a run (``StabilityConfig``):

* phase 0, the parents: every seed trains densely from its init (key stream 0) with its
  data order (stream 1) for ``steps`` steps, snapshotted at every rewind step k. With a
  ``lottery_run`` the seeds' ticket masks of its ``level`` are read
  (:func:`~jaxticket.stability.masks_from_run`) and θ_k is the snapshot times the mask
  (IMP with rewinding to k: the ticket's weights at k). The phase keeps θ_k for every k,
  the trained parents and the masks.
* phase i (1..K), one per k: ``copies`` children of every parent start from its θ_k (the
  mask fixed) and train ``steps - k`` steps (the schedule continues at k), copy ``a`` of
  parent ``s`` with data key ``seed_keys(seed, 3 + a, seeds)[s]``; all parents × copies
  train in ONE ``train_seeds`` program (stacked on the seed axis, parent-major). Then
  ``path_errors`` evaluates every pair of copies OF ONE PARENT at ``alphas`` points in one
  program; the phase keeps only the errors.
* with ``match``, a last phase: the trained parents of seed ``s`` and ``s + 1`` (different
  inits and data orders) before and after weight matching (``weight_matching`` with the
  key ``stream_key(seed, 2)``, then ``apply_permutation``).

The later phases read θ_k from phase 0: the runner holds phase 0's state once it trained
or loaded it (``run_workflow`` runs or loads the phases in order).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxticket.lottery.optimizer import make_optimizer
from jaxticket.masks import apply_mask, dense_mask
from jaxticket.stability.batchnorm import has_state
from jaxticket.stability.config import StabilityConfig
from jaxticket.stability.interpolate import all_pairs, alpha_grid, barriers, path_errors
from jaxticket.stability.matching import weight_matching
from jaxticket.stability.permutations import apply_permutation
from jaxticket.stability.run_inputs import dense_masks, matching_spec, ticket_masks
from jaxticket.train import train_seeds
from jaxticket.train.runner import init_seeds
from jaxticket.workflow.records import Record, seed_records
from jaxticket.workflow.run import Workflow, run_workflow
from jaxticket.workflow.setup import model_and_data
from jaxticket.workflow.store import RunStore, flatten_tree, unflatten_into
from jaxticket.workflow.training import resolve_devices, seed_keys, stream_key, train_on_devices

__all__ = ["STABILITY", "Parents", "PathPhase", "StabilityRunner", "run_stability"]


class Parents(NamedTuple):
    """Phase 0's state (host arrays, stacked over seeds).

    Attributes:
      thetas: one ``(params, model_state)`` per rewind step: θ_k (masked for a ticket).
      final: the dense parents' ``(params, model_state)`` after ``steps`` steps.
      mask: the ticket masks, or ``None`` (dense).
    """

    thetas: tuple[tuple[Any, Any], ...]
    final: tuple[Any, Any]
    mask: Any


class PathPhase(NamedTuple):
    """A later phase's state: the errors along its paths (``[P, A]`` each)."""

    errors: dict[str, np.ndarray]


def run_stability(
    config: StabilityConfig,
    *,
    out_dir: str = "runs",
    show_progress: bool = False,
    log=None,
    devices=None,
) -> tuple[RunStore, list[Record]]:
    """Runs (or resumes) the instability analysis ``config`` under ``out_dir``.

    Args:
      config: the analysis.
      out_dir: folder holding run directories; this run's is
        ``stability-<dense|ticket>-<model>-<dataset>-<digest>``.
      show_progress: progress bars.
      log: called with one line per event.
      devices: the devices the runs are spread over (default: every device of JAX's
        default backend).

    Returns:
      The run's store and the records in phase order: phase 0 one per parent
      (``variant="parent"``, ``seed_records`` fields); each sweep phase one per pair of
      copies of one parent: ``phase``, ``rewind_step``, ``variant`` (``"dense"`` or
      ``"ticket"``), ``seed`` (the parent), ``copies`` (the pair), ``barrier``, ``errors``
      (over the α grid, also ``alphas``), ``end_errors``, ``batchnorm_recomputed``,
      ``copy_test_accuracy`` (final, each copy), ``remaining``, ``mask_rewind`` (the
      lottery run's rewind step; ``None`` dense), ``diverged``,
      ``diverged_step``, ``collapsed``; the match phase one per (seed s, s + 1):
      ``barrier_before``, ``barrier_after``, ``errors_before``, ``errors_after``,
      ``end_errors_before``, ``end_errors_after``.

    Raises:
      ConfigError: the config does not fit the model, the data or the lottery run.
    """
    return run_workflow(
        STABILITY, config, out_dir=out_dir, show_progress=show_progress, log=log, devices=devices
    )


def sweep_keys(c: StabilityConfig) -> jax.Array:
    """The children's data keys, parent-major: row ``s * copies + a`` is
    ``seed_keys(seed, 3 + a, seeds)[s]``."""
    keys = jnp.stack([seed_keys(c.seed, 3 + a, c.seeds) for a in range(c.copies)], axis=1)
    return keys.reshape((c.seeds * c.copies,))


def within_parent_pairs(seeds: int, copies: int) -> np.ndarray:
    """``[seeds * C(copies, 2), 2]`` indices into the parent-major stack of children: every
    pair of copies of one parent, parents in order."""
    local = all_pairs(copies)
    return np.concatenate([s * copies + local for s in range(seeds)]).astype(np.int32)


class StabilityRunner:
    """The ``PhaseRunner`` of the stability workflow: data, model, keys, devices, and the
    parents (phase 0's state) once trained or loaded."""

    def __init__(self, config: StabilityConfig, devices=None):
        self.config = c = config
        self.devices = resolve_devices(devices, "run_stability")
        self.model, self.template, self.state_template, self.data = model_and_data(c)
        self.init_keys, self.data_keys = (
            seed_keys(c.seed, 0, c.seeds),
            seed_keys(c.seed, 1, c.seeds),
        )
        self.init_batch = init_seeds(self.model)
        self.alphas = alpha_grid(c.alphas)
        self.ticket, self.mask_rewind = None, None
        if c.lottery_run:
            self.ticket, self.mask_rewind = ticket_masks(c, self.template)
        # The copies always train with a mask per seed (all ones when dense), so a dense
        # and a ticket analysis of one training setting share their compiled programs.
        self.masks = self.ticket if c.lottery_run else dense_masks(self.template, c.seeds)
        self.spec = matching_spec(self.model) if c.match else None
        self.parents: Parents | None = None

    # -- phases ----------------------------------------------------------------------

    def run_phase(self, phase: int, state, show_progress: bool) -> tuple[Any, list[Record]]:
        """Phase 0 trains the parents; 1..K the copies of one rewind step; the last (with
        ``match``) the weight-matching barriers."""
        del state
        c = self.config
        if phase == 0:
            return self._parents(show_progress)
        if phase <= len(c.rewind_steps):
            return self._sweep(phase, show_progress)
        return self._match()

    def _parents(self, show_progress: bool) -> tuple[Parents, list[Record]]:
        c = self.config
        params, model_state = jax.device_get(self.init_batch(self.init_keys))
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
            snapshot_steps=tuple(c.rewind_steps),
            show_progress=show_progress,
        )
        thetas = tuple(
            (p if self.ticket is None else apply_mask(p, self.ticket), s)
            for p, s in result.snapshots
        )
        self.parents = Parents(thetas, (result.params, result.model_state), self.ticket)
        dense = dense_masks(self.template, c.seeds)
        records = seed_records(result, dense, c.seeds, phase=0, variant="parent")
        return self.parents, records

    def _sweep(self, phase: int, show_progress: bool) -> tuple[PathPhase, list[Record]]:
        c = self.config
        k = c.rewind_steps[phase - 1]
        theta, theta_state = self.parents.thetas[phase - 1]
        repeat = lambda tree: jax.tree.map(lambda x: np.repeat(np.asarray(x), c.copies, 0), tree)  # noqa: E731
        mask = repeat(self.masks)
        keys = sweep_keys(c)
        result = train_on_devices(
            train_seeds,
            self.model,
            self.data,
            make_optimizer(c, offset=k),
            self.devices,
            init_keys=keys,
            data_keys=keys,
            steps=c.steps - k,
            start_step=k,
            batch_size=c.batch_size,
            eval_every=min(c.eval_every, c.steps - k),
            params=repeat(theta),
            model_state=repeat(theta_state),
            mask=mask,
            mask_per_seed=True,
            show_progress=show_progress,
        )
        pairs = within_parent_pairs(c.seeds, c.copies)
        path = path_errors(
            self.model, result.params, result.model_state, self.data, pairs, self.alphas
        )
        errors = np.asarray(path.errors)
        barrier = np.asarray(barriers(errors, self.alphas))
        runs = c.seeds * c.copies
        children = seed_records(result, mask, runs)
        records = []
        for p, (i, j) in enumerate(pairs.tolist()):
            a, b = children[i], children[j]
            records.append(
                {
                    "phase": phase,
                    "rewind_step": int(k),
                    "variant": "dense" if self.ticket is None else "ticket",
                    "seed": i // c.copies,
                    "copies": [i % c.copies, j % c.copies],
                    "barrier": float(barrier[p]),
                    "errors": errors[p].tolist(),
                    "alphas": self.alphas.tolist(),
                    "end_errors": [float(errors[p, 0]), float(errors[p, -1])],
                    "batchnorm_recomputed": bool(path.batchnorm_recomputed),
                    "copy_test_accuracy": [a["test_accuracy_final"], b["test_accuracy_final"]],
                    "remaining": a["remaining"],
                    "mask_rewind": self.mask_rewind,
                    "collapsed": sorted(set(a["collapsed"]) | set(b["collapsed"])),
                    "diverged": a["diverged"] or b["diverged"],
                    "diverged_step": max(a["diverged_step"], b["diverged_step"]),
                }
            )
        return PathPhase({"errors": errors}), records

    def _match(self) -> tuple[PathPhase, list[Record]]:
        c = self.config
        params, model_state = self.parents.final
        stateful = has_state(model_state)
        key = stream_key(c.seed, 2)

        def seed(tree, s):
            return jax.tree.map(lambda x: np.asarray(x)[s], tree)

        aligned_p, aligned_s = [], []
        for s in range(c.seeds - 1):
            pb, sb = seed(params, s + 1), seed(model_state, s + 1) if stateful else None
            perms = weight_matching(self.spec, seed(params, s), pb, key=key)
            pb, sb = apply_permutation(self.spec, perms, pb, sb)
            aligned_p += [seed(params, s), pb]
            aligned_s += [seed(model_state, s), sb if stateful else model_state]
        stack = lambda trees: jax.tree.map(lambda *xs: np.stack(xs), *trees)  # noqa: E731
        pairs = np.array([[s, s + 1] for s in range(c.seeds - 1)], np.int32)
        before = path_errors(self.model, params, model_state, self.data, pairs, self.alphas)
        after_state = stack(aligned_s) if stateful else model_state
        after = path_errors(
            self.model,
            stack(aligned_p),
            after_state,
            self.data,
            np.stack([2 * pairs[:, 0], 2 * pairs[:, 0] + 1], axis=1),  # [p_s, matched p_s+1]
            self.alphas,
        )
        eb, ea = np.asarray(before.errors), np.asarray(after.errors)
        bb, ba = np.asarray(barriers(eb, self.alphas)), np.asarray(barriers(ea, self.alphas))
        records = [
            {
                "phase": len(c.rewind_steps) + 1,
                "variant": "match",
                "seed": s,
                "other_seed": s + 1,
                "barrier_before": float(bb[s]),
                "barrier_after": float(ba[s]),
                "errors_before": eb[s].tolist(),
                "errors_after": ea[s].tolist(),
                "alphas": self.alphas.tolist(),
                "end_errors_before": [float(eb[s, 0]), float(eb[s, -1])],
                "end_errors_after": [float(ea[s, 0]), float(ea[s, -1])],
                "batchnorm_recomputed": bool(before.batchnorm_recomputed),
            }
            for s in range(c.seeds - 1)
        ]
        return PathPhase({"errors_before": eb, "errors_after": ea}), records

    # -- checkpoints -----------------------------------------------------------------

    def pack(self, state) -> dict[str, Any]:
        """Phase 0: ``theta<i>/params|state/<leaf>``, ``final/params|state/<leaf>`` and
        (a ticket) ``mask/<leaf>``; later phases: their errors."""
        if isinstance(state, PathPhase):
            return dict(state.errors)
        flat = {}
        for i, (p, s) in enumerate(state.thetas):
            flat |= flatten_tree(p, f"theta{i}/params") | flatten_tree(s, f"theta{i}/state")
        flat |= flatten_tree(state.final[0], "final/params")
        flat |= flatten_tree(state.final[1], "final/state")
        if state.mask is not None:
            flat |= flatten_tree(state.mask, "mask")
        return flat

    def unpack(self, flat: dict[str, Any]):
        """Inverse of :meth:`pack`; phase 0's state is also kept as :attr:`parents`."""
        if not any(key.startswith("final/") for key in flat):
            return PathPhase({k: np.asarray(v) for k, v in flat.items()})

        def tree(prefix):
            params = unflatten_into(self.template, flat, f"{prefix}/params")
            state = unflatten_into(self.state_template, flat, f"{prefix}/state")
            return jax.tree.map(np.asarray, params), jax.tree.map(np.asarray, state)

        thetas = tuple(tree(f"theta{i}") for i in range(len(self.config.rewind_steps)))
        mask = None
        if any(key.startswith("mask/") for key in flat):
            mask = jax.tree.map(np.asarray, unflatten_into(dense_mask(self.template), flat, "mask"))
        self.parents = Parents(thetas, tree("final"), mask)
        return self.parents


# The workflow: run directory stability-<dense|ticket>-<model>-<dataset>-<digest>; phase 0
# the parents, one phase per rewind step, then (match) the weight-matching phase.
STABILITY = Workflow(
    name=lambda c: f"stability-{'ticket' if c.lottery_run else 'dense'}-{c.model}-{c.dataset}",
    phases=lambda c: range(len(c.rewind_steps) + 1 + int(c.match)),
    setup=StabilityRunner,
    group_key="phase",
)
