"""Regrowth: pruned weights come back at exactly zero, with fresh optimizer state.

Dynamic sparse training (RigL, SET...) swaps the mask during training: some weights are
pruned, others regrown. A regrown weight must start from nothing: its value is ``0.0`` and
its optimizer state (SGD's momentum trace, Adam's ``mu`` and ``nu``, any state kept per
parameter) is what a fresh ``optimizer.init`` would give it, not what it accumulated (or,
under ``zero_pruned``, decayed) before it was pruned.

``reset_optimizer_state`` does the state part for any optax optimizer, without knowing its
state types: ``optax.tree_utils.tree_map_params`` finds every part of the state that is a
copy of the params tree (``mu``, ``nu``, ``trace``, the states inside ``chain``,
``inject_hyperparams``, ``masked``, ``multi_transform``, ``zero_pruned``...), and only
those are touched. Everything else (step counts, which are shared by all weights and keep
counting; ``inject_hyperparams``' hyperparameters; random keys; the mask) is returned
unchanged. ``regrow`` is the whole mask swap on a ``zero_pruned`` optimizer: params, state
and mask.

Assumption: each param-shaped part of the state holds one entry per weight, with the
param's shape, so that resetting entry ``i`` resets weight ``i``'s state and no other. A
state leaf in such a part whose shape differs from its param's (adafactor's factored
``v_row`` / ``v_col``, sm3's per-axis accumulators) is refused with an error rather than
reset wrongly. A leaf with the param's shape that is not per weight (say a per-layer
statistic broadcast to the weight's shape) cannot be told apart and would be reset
entrywise; none of the optax optimizers in tests/test_regrow.py keeps one.

Note on Adam: the step count is shared by all weights (optax keeps one ``count``), so a
regrown weight's moments restart from zero under a bias correction already near 1, and
its first steps are smaller than those of a weight in a fresh optimizer.

Example::

    opt = jaxticket.zero_pruned(optax.adam(1e-3))
    opt_state = replace_mask(opt.init(params), mask)
    ...                                           # train
    params, opt_state = jaxticket.regrow(params, opt_state, new_mask, optimizer=opt)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
import optax.tree_utils as otu

from jaxticket._paths import path_str
from jaxticket.masks import Mask, Params, mask_and, mask_not, validate_mask
from jaxticket.optim import _check_same_layout, _map_masked, get_mask, replace_mask

__all__ = ["regrow", "reset_optimizer_state"]

_is_none = lambda x: x is None  # noqa: E731


def reset_optimizer_state(
    opt_state: optax.OptState,
    where: Mask,
    *,
    optimizer: optax.GradientTransformation,
    params: Params,
) -> optax.OptState:
    """``opt_state`` with the per-weight state at ``where`` reset to ``optimizer.init``'s.

    Pure and jittable (``optimizer`` is static: close over it), and works under ``vmap``.
    The reset value is that of ``optimizer.init(params)`` at the same entry: ``0`` for the
    momentum and moments of ``sgd``, ``adam``, ``adamw``, ``lion``..., ``adagrad``'s
    ``initial_accumulator_value``, the param itself for states that copy the params.

    Args:
      opt_state: the state of ``optimizer`` (any optax optimizer, ``zero_pruned`` ones too).
      where: a ``bool`` pytree shaped like the params: ``True`` where the state is reset.
        ``None`` leaves (never-pruned leaves such as biases) are left alone.
      optimizer: the optimizer that built ``opt_state`` (needed to find the param-shaped
        parts of its state, and their initial values).
      params: the current params (their shapes, dtypes and, for states that copy them,
        values).

    Returns:
      The state with the same structure; only entries at ``where`` of the param-shaped
      parts differ.

    Raises:
      ValueError, TypeError: ``where`` does not fit ``params`` (the message names the leaf
        path); ``optimizer.init(params)`` does not have ``opt_state``'s structure (another
        optimizer's state); a param-shaped state leaf whose shape is not its param's; an
        optimizer whose state ``tree_map_params`` cannot map.
    """
    _check_optimizer(optimizer, "reset_optimizer_state")
    validate_mask(where, params)
    fresh = optimizer.init(params)
    try:
        paired = jax.tree.map(_Pair, opt_state, fresh)
    except (ValueError, TypeError):
        raise ValueError(
            "reset_optimizer_state: optimizer.init(params) does not have the structure of "
            "opt_state; pass the optimizer that built opt_state (and params that fit it)"
        ) from None

    # ``where`` gets a leaf at each ``None`` so that it has the params' structure exactly
    # (``tree_map_params`` maps each params copy in the state together with it).
    where_paths = jax.tree_util.tree_map_with_path(
        lambda path, m: _Where(path_str(path), m), where, is_leaf=_is_none
    )

    def reset_copy(copy, wheres):
        # One copy of the params in the state, entry by entry (``where`` first: under it a
        # copy holds a _Pair, an NNX Variable around one, or optax.masked's MaskedNode).
        return jax.tree.map(
            lambda w, sub: jax.tree.map(w.select, sub, is_leaf=_is_pair), wheres, copy
        )

    try:
        out = otu.tree_map_params(
            optimizer,
            reset_copy,
            paired,
            where_paths,
            transform_non_params=_take_old,
            is_leaf=lambda _: True,  # reset_copy gets each whole copy
        )
    except _NotPerParameter:
        raise
    except Exception as err:  # noqa: BLE001 (any failure of the optimizer's probe init)
        first_line = str(err).splitlines()[0] if str(err) else ""
        raise ValueError(
            "reset_optimizer_state: optax.tree_utils.tree_map_params could not find the "
            f"param-shaped parts of this optimizer's state ({type(err).__name__}: "
            f"{first_line})"
        ) from err
    return out


def regrow(
    params: Params,
    opt_state: optax.OptState,
    new_mask: Mask,
    *,
    optimizer: optax.GradientTransformation,
) -> tuple[Params, optax.OptState]:
    """Swaps the mask of a ``zero_pruned`` state for ``new_mask``, regrowing from zero.

    With ``old = get_mask(opt_state)``:

    * regrown weights (``new & ~old``) become exactly ``0.0`` and their optimizer state is
      reset (``reset_optimizer_state``);
    * weights pruned by ``new_mask`` become exactly ``0.0`` now (``zero_pruned`` keeps
      them there); their state is left as it is: it no longer moves them, and is reset
      if they are regrown;
    * weights alive in both, ``None`` mask leaves and every other state entry are
      returned bit for bit.

    Pure and jittable (close over ``optimizer``), and works under ``vmap`` over seeds.

    Args:
      params: the current params.
      opt_state: the state of ``optimizer``, holding exactly one ``PruneMaskState``.
      new_mask: the new mask: the old one's structure, ``None`` leaves and shapes.
      optimizer: the optimizer that built ``opt_state`` (a ``zero_pruned`` optimizer, or
        a chain etc. containing one).

    Returns:
      ``(params, opt_state)``, the state holding ``new_mask``.

    Raises:
      ValueError, TypeError: as ``get_mask`` and ``reset_optimizer_state``; a new mask
        whose structure, ``None`` leaves, shapes or dtype differ from the old mask's (the
        message names the leaf path); ``optimizer`` missing or not an optax optimizer.
    """
    _check_optimizer(optimizer, "regrow")
    old = get_mask(opt_state)
    _check_same_layout(new_mask, old, who="regrow")
    kept = mask_and(old, new_mask)
    params = _map_masked(_keep_or_zero, kept, params)
    grown = mask_and(new_mask, mask_not(old))
    opt_state = reset_optimizer_state(opt_state, grown, optimizer=optimizer, params=params)
    return params, replace_mask(opt_state, new_mask)


# --------------------------------------------------------------------------------------
# helpers


class _Pair:
    """A state leaf and the same leaf of ``optimizer.init(params)``; a pytree leaf."""

    __slots__ = ("old", "new")

    def __init__(self, old, new):
        self.old, self.new = old, new


class _Where:
    """A ``where`` leaf (bool array or ``None``) with its path; a pytree leaf."""

    __slots__ = ("path", "mask")

    def __init__(self, path, mask):
        self.path, self.mask = path, mask

    def select(self, pair: _Pair):
        old, new, m = pair.old, pair.new, self.mask
        if m is None:
            return old
        if jnp.shape(old) != tuple(m.shape):
            raise _NotPerParameter(
                f"reset_optimizer_state: a param-shaped part of the optimizer state holds a "
                f"leaf of shape {jnp.shape(old)} for param {self.path!r} of shape "
                f"{tuple(m.shape)}: not one entry per weight (factored or per-axis state, "
                "as in adafactor or sm3), so it cannot be reset per weight"
            )
        return jnp.where(m, new, old)


class _NotPerParameter(ValueError):
    pass


def _is_pair(x: Any) -> bool:
    return isinstance(x, _Pair)


def _take_old(tree: Any) -> Any:
    return jax.tree.map(lambda p: p.old, tree, is_leaf=_is_pair)


def _keep_or_zero(m, p):
    return p if m is None or p is None else jnp.where(m, p, jnp.zeros((), p.dtype))


def _check_optimizer(optimizer: Any, who: str) -> None:
    if not (
        callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))
    ):
        raise TypeError(
            f"{who}: optimizer must be the optax optimizer that built opt_state (it finds "
            f"the per-weight parts of the state), got {type(optimizer).__name__}"
        )
