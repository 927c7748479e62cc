"""Pruning at initialization: SNIP, iterative SNIP, GraSP, SynFlow, random and magnitude.

Every method is a frozen dataclass of plain values (hashable by value, so it can key a
compile cache) with one call::

    mask = method.mask(model, params, model_state, data, key, sparsity)

``model`` is a jaxticket ``Model``, ``data`` a jaxticket ``Dataset``, ``key`` a
``jax.random`` key (same key, same mask) and ``sparsity`` the fraction of the prunable
weights (``dense_mask(params)``) to prune, in [0, 1). The whole call is one compiled
program (the method and model are its static arguments); ``sparsity`` is traced, so every
sparsity reuses it. It also works inside ``jax.jit``/``jax.vmap`` (per-seed params).

Data-dependent methods (SNIP, GraSP) draw ``batch_size`` training examples without
replacement with ``key`` (:func:`draw_batch`) and run the model in train mode (batch
statistics, as the papers' training-mode forward) with a dropout key split from ``key``;
SynFlow is data-free and runs the model in eval mode (BatchNorm running statistics).

Score-based methods allocate globally by default (as the papers); ``inverted=True`` keeps
the LOWEST-scoring weights instead at the same sparsity and allocation (the score-inversion
sanity check of Frankle et al. 2021; for iterative methods every round is inverted).
Every prunable leaf keeps ``min_keep`` (1) weights; with ``min_keep=0`` a layer may
collapse, and an eager call then warns ``LayerCollapseWarning`` naming the leaves.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxticket.masks import dense_mask
from jaxticket.pruning import allocation as alloc
from jaxticket.pruning import criteria
from jaxticket.pruning.grasp import grasp, grasp_loss
from jaxticket.pruning.pruner import make_pruner
from jaxticket.pruning.pruner_checks import _warn_collapsed
from jaxticket.pruning.rounds import prune_in_rounds
from jaxticket.pruning.synflow import synflow, synflow_prune
from jaxticket.sparse.static import random_mask

__all__ = [
    "METHODS",
    "SNIP",
    "GraSP",
    "MagnitudeInit",
    "RandomInit",
    "SynFlow",
    "draw_batch",
    "get",
    "negated",
]

_SCORE_ALLOCATIONS = ("global", "layerwise", "erk", "er")


def draw_batch(data: Any, key: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """``batch_size`` training examples of ``data`` drawn without replacement with ``key``.

    The examples are ``permutation(key, n_train)[:batch_size]``; jittable.

    Raises:
      ValueError: ``data`` has no training split, or fewer than ``batch_size`` examples.
    """
    n = _check_batch(data, batch_size)
    idx = jax.random.permutation(key, n)[:batch_size]
    return jnp.asarray(data.x_train)[idx], jnp.asarray(data.y_train)[idx]


def _check_batch(data: Any, batch_size: int) -> int:
    """The number of training examples, after checking a batch of ``batch_size`` fits."""
    if data is None or getattr(data, "x_train", None) is None:
        raise ValueError("at_init: this method needs data= (a jaxticket Dataset) for its batch")
    n = int(jnp.shape(data.y_train)[0])
    if batch_size > n:
        raise ValueError(f"at_init: batch_size={batch_size} exceeds the {n} training examples")
    return n


def negated(criterion: criteria.Criterion) -> criteria.Criterion:
    """The criterion with every score negated: a pruner then keeps the LOWEST scores."""

    def inverted(params, *, mask=None, key=None, batch=None):
        scores = criterion(params, mask=mask, key=key, batch=batch)
        return jax.tree.map(jnp.negative, scores)

    return inverted


class _Method:
    """Shared checks and the compiled entry point; subclasses define ``_mask``."""

    def mask(self, model, params, model_state, data, key, sparsity):
        """The mask of ``params`` at ``sparsity`` (see the module docstring).

        Raises:
          ValueError: ``sparsity`` outside [0, 1); a data-dependent method without data or
            with fewer training examples than ``batch_size``.
        """
        who = type(self).__name__
        alloc.check_rate("sparsity", sparsity, where=f"{who}.mask")
        if getattr(self, "batch_size", None) is not None:
            _check_batch(data, self.batch_size)  # before compiling
        else:
            data = None  # data-free: keep it out of the compiled program
        result = _compiled_mask(
            self, model, params, model_state, data, key, jnp.asarray(sparsity, jnp.float32)
        )
        if not any(isinstance(m, jax.core.Tracer) for m in jax.tree.leaves(result)):
            _warn_collapsed(result)
        return result


@functools.partial(jax.jit, static_argnums=(0, 1))
def _compiled_mask(method, model, params, model_state, data, key, sparsity):
    return method._mask(model, params, model_state, data, key, sparsity)


def _train_loss(model, model_state, dropout_key):
    def loss_fn(params, batch):
        x, y = batch
        logits, _ = model.apply(params, model_state, x, train=True, key=dropout_key)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    return loss_fn


def _train_apply(model, model_state, dropout_key):
    return lambda p, x: model.apply(p, model_state, x, train=True, key=dropout_key)[0]


def _eval_apply(model, model_state):
    return lambda p, x: model.apply(p, model_state, x, train=False, key=None)[0]


def _maybe_negated(criterion, inverted: bool):
    return negated(criterion) if inverted else criterion


@dataclasses.dataclass(frozen=True)
class SNIP(_Method):
    """SNIP (Lee et al. 2019): keep the largest |g ⊙ w| on one batch.

    ``rounds > 1`` is iterative SNIP: ``rounds`` rescoring rounds on the same batch with
    the exponential density schedule of SynFlow, ``(1 − sparsity)^(k/rounds)``.

    Attributes:
      batch_size: training examples in the scoring batch.
      rounds: scoring rounds (1: the paper's one-shot SNIP).
      allocation: "global" (the paper), "layerwise", "erk" or "er".
      min_keep: weights every prunable leaf keeps at least.
      inverted: keep the lowest scores (sanity check).
    """

    batch_size: int = 256
    rounds: int = 1
    allocation: str = "global"
    min_keep: int = 1
    inverted: bool = False

    def __post_init__(self):
        _check_common(self, batch=True)
        _check_int("SNIP", "rounds", self.rounds, 1)

    def _mask(self, model, params, model_state, data, key, sparsity):
        batch_key, dropout_key = jax.random.split(key)
        batch = draw_batch(data, batch_key, self.batch_size)
        crit = criteria.snip(_train_loss(model, model_state, dropout_key))
        pruner = make_pruner(
            _maybe_negated(crit, self.inverted), self.allocation, min_keep=self.min_keep
        )
        mask = dense_mask(params)
        return prune_in_rounds(pruner, params, mask, sparsity, self.rounds, batch=batch)


@dataclasses.dataclass(frozen=True)
class GraSP(_Method):
    """GraSP (Wang et al. 2020): remove the largest −w ⊙ (H g) (``jaxticket.pruning.grasp``).

    The loss is the cross-entropy of the train-mode logits divided by ``temperature``.

    Attributes:
      batch_size: training examples in the scoring batch.
      temperature: the logit temperature (200 in the paper).
      allocation, min_keep, inverted: as for ``SNIP``.
    """

    batch_size: int = 256
    temperature: float = 200.0
    allocation: str = "global"
    min_keep: int = 1
    inverted: bool = False

    def __post_init__(self):
        _check_common(self, batch=True)
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not 0 < t < math.inf:
            raise ValueError(f"GraSP: temperature must be a positive number, got {t!r}")

    def _mask(self, model, params, model_state, data, key, sparsity):
        batch_key, dropout_key = jax.random.split(key)
        batch = draw_batch(data, batch_key, self.batch_size)
        loss = grasp_loss(_train_apply(model, model_state, dropout_key), float(self.temperature))
        pruner = make_pruner(
            _maybe_negated(grasp(loss), self.inverted), self.allocation, min_keep=self.min_keep
        )
        return pruner(params, dense_mask(params), sparsity=sparsity, batch=batch)


@dataclasses.dataclass(frozen=True)
class SynFlow(_Method):
    """SynFlow (Tanaka et al. 2020): data-free, ``rounds`` iterative rounds (100 in the paper).

    Uses ``jaxticket.pruning.synflow_prune`` with the model in eval mode; ``inverted=True``
    runs the same schedule keeping the lowest flow scores at every round. ``data`` and
    ``key`` are not used.

    Attributes:
      rounds: scoring rounds.
      allocation, min_keep, inverted: as for ``SNIP``.
    """

    rounds: int = 100
    allocation: str = "global"
    min_keep: int = 1
    inverted: bool = False

    def __post_init__(self):
        _check_common(self, batch=False)
        _check_int("SynFlow", "rounds", self.rounds, 1)

    def _mask(self, model, params, model_state, data, key, sparsity):
        apply_fn = _eval_apply(model, model_state)
        shape = tuple(model.input_shape)
        mask = dense_mask(params)
        if not self.inverted:
            return synflow_prune(
                apply_fn,
                shape,
                params,
                mask,
                sparsity,
                rounds=self.rounds,
                allocation=self.allocation,
                min_keep=self.min_keep,
            )
        crit = negated(synflow(apply_fn, shape))
        pruner = make_pruner(crit, self.allocation, min_keep=self.min_keep)
        return prune_in_rounds(pruner, params, mask, sparsity, self.rounds)


@dataclasses.dataclass(frozen=True)
class RandomInit(_Method):
    """A uniformly random mask with ERK, ER or uniform layer densities (``random_mask``).

    Attributes:
      allocation: "erk", "er" or "uniform" (the same sparsity in every layer).
      min_keep: weights every prunable leaf keeps at least.
    """

    allocation: str = "erk"
    min_keep: int = 1

    def __post_init__(self):
        _check_choice("RandomInit", "allocation", self.allocation, ("erk", "er", "uniform"))
        _check_int("RandomInit", "min_keep", self.min_keep, 0)

    def _mask(self, model, params, model_state, data, key, sparsity):
        return random_mask(params, key, sparsity, self.allocation, self.min_keep)


@dataclasses.dataclass(frozen=True)
class MagnitudeInit(_Method):
    """Keep the largest |w| of the initial weights (magnitude at init, Frankle et al. 2021).

    Attributes:
      allocation: "global" or "layerwise".
      min_keep: weights every prunable leaf keeps at least.
      inverted: keep the smallest |w| (sanity check).
    """

    allocation: str = "global"
    min_keep: int = 1
    inverted: bool = False

    def __post_init__(self):
        _check_choice("MagnitudeInit", "allocation", self.allocation, ("global", "layerwise"))
        _check_int("MagnitudeInit", "min_keep", self.min_keep, 0)
        _check_bool("MagnitudeInit", "inverted", self.inverted)

    def _mask(self, model, params, model_state, data, key, sparsity):
        crit = _maybe_negated(criteria.magnitude, self.inverted)
        pruner = make_pruner(crit, self.allocation, min_keep=self.min_keep)
        return pruner(params, dense_mask(params), sparsity=sparsity)


METHODS = {
    "snip": SNIP,
    "grasp": GraSP,
    "synflow": SynFlow,
    "random_erk": functools.partial(RandomInit, allocation="erk"),
    "random_er": functools.partial(RandomInit, allocation="er"),
    "random_uniform": functools.partial(RandomInit, allocation="uniform"),
    "magnitude_init": MagnitudeInit,
}


def get(name: str, **options: Any):
    """The method registered as ``name``, built with ``options`` (its dataclass fields).

    Raises:
      ValueError: an unknown name (the message lists the valid ones).
    """
    if name not in METHODS:
        raise ValueError(f"unknown at-init method {name!r}; valid: {', '.join(sorted(METHODS))}")
    return METHODS[name](**options)


# --------------------------------------------------------------------------------------
# checks


def _check_int(who, name, value, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{who}: {name} must be an int >= {low}, got {value!r}")


def _check_bool(who, name, value):
    if not isinstance(value, bool):
        raise ValueError(f"{who}: {name} must be True or False, got {value!r}")


def _check_choice(who, name, value, valid):
    if value not in valid:
        raise ValueError(f"{who}: unknown {name} {value!r}; valid: {', '.join(valid)}")


def _check_common(method, *, batch: bool):
    who = type(method).__name__
    if batch:
        _check_int(who, "batch_size", method.batch_size, 1)
    _check_choice(who, "allocation", method.allocation, _SCORE_ALLOCATIONS)
    _check_int(who, "min_keep", method.min_keep, 0)
    _check_bool(who, "inverted", method.inverted)
