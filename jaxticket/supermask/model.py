"""A supermask as an ordinary jaxticket ``Model``: trainable scores next to frozen weights.

:func:`supermask_model` wraps any ``Model`` into one whose params are
``{"scores": scores, "weights": weights}`` and whose ``apply`` runs the wrapped model on
the effective weights (:func:`effective_params`): ``weights ⊙ topk(|scores|)`` per layer
(``kind="edge_popup"``) or ``weights ⊙ sign(scores)`` (``kind="sign"``, HideNseek's sign
supermask), each with a straight-through gradient to the scores. :func:`freeze_weights`
wraps an optax optimizer so that only the scores move (``optax.multi_transform`` with
``optax.set_to_zero`` on the weights): ``jaxticket.train.train_seeds`` then trains a
supermask, seeds vmapped, like any other model. A fixed sparse mask (HideNseek's at-init
mask) is the engine's own ``mask=`` over these params (:func:`wrapped_mask`), kept by
``jaxticket.zero_pruned``.

Example::

    model = supermask_model(base, k=0.5)             # edge-popup, half of each layer
    params = supermask_params(base_params, uniform_scores(key, base_params))
    result = train_seeds(model, data, freeze_weights(optax.adam(1e-3)), params=..., ...)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxticket._paths import leaves_with_paths, map_with_path_str
from jaxticket.models.base import Model
from jaxticket.supermask.scores import (
    check_k,
    keep_count,
    magnitude_scores,
    scored_leaves,
    sign_ste,
    signed_constant,
    topk_ste,
    uniform_scores,
)

__all__ = [
    "KINDS",
    "effective_params",
    "freeze_weights",
    "supermask_model",
    "supermask_params",
    "wrapped_mask",
]

KINDS = ("edge_popup", "sign")
_KEYS = ("scores", "weights")


def supermask_model(base: Model, k: float | None = None, *, kind: str = "edge_popup") -> Model:
    """``base`` with fixed weights and a learned mask over them.

    Args:
      base: any jaxticket ``Model``.
      k: ``edge_popup``: the fraction of every scored layer kept, in (0, 1]; ``sign``:
        must be ``None`` (the sign supermask keeps every weight; a sparse mask comes from
        the engine's ``mask=``).
      kind: ``"edge_popup"`` (top-k of ``|scores|`` per layer) or ``"sign"``.

    Returns:
      A ``Model`` whose params are ``{"scores", "weights"}``: ``init(key)`` draws the base
      init, fixes its scored leaves at the signed Kaiming constant and draws
      ``uniform_scores`` (``edge_popup``) or ``|weights|`` (``sign``: the first pass is the
      base network); the state is the base model's.

    Raises:
      ValueError: an unknown ``kind``, ``k`` outside (0, 1], or ``k`` given with ``sign``.
      TypeError: ``base`` is not a ``Model``, or ``k`` is not a number.
    """
    if not isinstance(base, Model):
        raise TypeError(f"supermask_model: base must be a jaxticket Model, got {type(base)}")
    if kind not in KINDS:
        raise ValueError(f"supermask_model: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "sign" and k is not None:
        raise ValueError("supermask_model: k is for edge_popup; kind='sign' takes k=None")
    if kind == "edge_popup":
        if k is None:
            raise ValueError("supermask_model: kind='edge_popup' needs k in (0, 1]")
        k = check_k(k, "supermask_model k")
    template = jax.eval_shape(base.init, jax.random.key(0))[0]
    scored = {
        p: m is not None for p, m in leaves_with_paths(scored_leaves(template), keep_none=True)
    }

    def init(key):
        params, state = base.init(key)
        weights = signed_constant(params)
        if kind == "edge_popup":
            scores = uniform_scores(jax.random.fold_in(key, 1), params)
        else:
            scores = magnitude_scores(weights)
        return supermask_params(weights, scores), state

    def apply(params, state, x, *, train: bool, key=None):
        check_supermask_params(params, scored)
        effective = effective_params(params, k, kind)
        return base.apply(effective, state, x, train=train, key=key)

    label = f"k={k:g}" if kind == "edge_popup" else "sign"
    return Model(f"{base.name}[{label}]", init, apply, base.input_shape, base.num_classes)


def supermask_params(weights: Any, scores: Any) -> dict[str, Any]:
    """The params of a supermask model: ``{"scores": scores, "weights": weights}``."""
    return {"scores": scores, "weights": weights}


def effective_params(params: dict[str, Any], k: float | None, kind: str = "edge_popup") -> Any:
    """The weights the forward pass uses: ``weights ⊙ topk_ste(|scores|)`` per scored leaf
    (``edge_popup``, ``keep_count(k, n)`` kept) or ``weights ⊙ sign_ste(scores)``
    (``sign``); leaves without a score pass unchanged."""

    def one(path, s, w):
        if s is None:
            return w
        if kind == "sign":
            return w * sign_ste(s)
        return w * topk_ste(jnp.abs(s), keep_count(k, s.size))

    return map_with_path_str(one, params["scores"], params["weights"])


def check_supermask_params(params: Any, scored: dict[str, bool]) -> None:
    """``params`` is ``{"scores", "weights"}`` with a score of the weight's shape on every
    scored leaf (``scored``: leaf path -> whether it has a score) and ``None`` elsewhere,
    or a one-line ``ValueError`` naming the leaf."""
    if not isinstance(params, dict) or set(params) != set(_KEYS):
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"supermask params must be a dict with keys scores, weights; got {got}")
    weights = dict(leaves_with_paths(params["weights"]))
    scores = dict(leaves_with_paths(params["scores"], keep_none=True))
    for path in scores:
        if path not in scored:
            raise ValueError(f"supermask scores: leaf {path!r} is not a leaf of the model's params")
    for path, wanted in scored.items():
        s = scores.get(path)
        if wanted and s is None:
            raise ValueError(f"supermask scores: leaf {path!r} has no score (a scored weight)")
        if not wanted and s is not None:
            raise ValueError(f"supermask scores: leaf {path!r} is unscored; its score must be None")
        if s is not None and jnp.shape(s) != jnp.shape(weights.get(path)):
            raise ValueError(
                f"supermask scores: leaf {path!r} has shape {tuple(jnp.shape(s))}, its weight "
                f"{tuple(jnp.shape(weights.get(path)))}"
            )


def freeze_weights(optimizer: optax.GradientTransformation) -> optax.GradientTransformation:
    """``optimizer`` on the scores, ``optax.set_to_zero`` on the weights: the weights never
    move (not even by weight decay)."""
    return optax.multi_transform({"scores": optimizer, "weights": optax.set_to_zero()}, _labels)


def _labels(params: dict[str, Any]) -> dict[str, Any]:
    # Which transform of freeze_weights each leaf takes: its top-level key.
    return {name: jax.tree.map(lambda _, n=name: n, params[name]) for name in _KEYS}


def wrapped_mask(mask: Any) -> dict[str, Any]:
    """A mask over the base params as the engine's ``mask=`` of a supermask model: the same
    mask on the scores and on the weights (pruned entries of both stay exactly 0)."""
    return {"scores": mask, "weights": mask}
