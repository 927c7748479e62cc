"""An optax wrapper that keeps pruned weights exactly zero, with the mask in its state.

``masked(inner)`` wraps any optax optimizer. Before the inner optimizer runs, gradients of
pruned weights are zeroed, so momentum buffers and Adam moments never build up for them;
afterwards, the update of a pruned weight is replaced by ``-param``, so ``param + update``
is exactly ``+0.0`` (IEEE: ``x + (-x) == +0``) whatever the inner optimizer did (momentum,
decoupled weight decay) and even if the incoming weight was not zero.

The mask lives in the optimizer state (``MaskedState.mask``), not in the closure, so a
pruning schedule can swap it inside ``jax.jit`` with ``replace_mask``. The per-step path has
no ``lax.cond``: mask updates happen between steps (the train engine swaps the mask between
``lax.scan`` chunks), so a masked step costs what a dense one does (see
``benchmarks/RESULTS.md``, masked step).

Example::

    opt = jaxticket.optim.masked(optax.adam(1e-3))
    opt_state = opt.init(params)                    # dense mask of the prunable leaves
    opt_state = replace_mask(opt_state, mask)       # start from a given mask
    updates, opt_state = opt.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)   # pruned weights are now exactly 0.0
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxticket._paths import leaves_with_paths
from jaxticket.masks import Mask, dense_mask, validate_mask

_is_none = lambda x: x is None  # noqa: E731  (keeps ``None`` mask leaves visible to tree_map)


class MaskedState(NamedTuple):
    """State of ``masked``: the current mask and the wrapped optimizer's state."""

    mask: Mask
    inner_state: optax.OptState


def masked(
    inner: optax.GradientTransformation, mask: Mask | None = None
) -> optax.GradientTransformationExtraArgs:
    """Wraps ``inner`` so that weights pruned by the mask stay exactly zero.

    The mask can be given here, or left ``None`` so that ``init`` starts from
    ``dense_mask(params)`` (every prunable leaf alive). To start from a mask known only when
    the state is built, use ``replace_mask(opt.init(params), mask)``: no separate
    ``init_with_mask`` is needed. Wrap the whole optimizer (``masked(optax.chain(...))``) so
    that no transformation after the wrapper can move a pruned weight.

    Args:
      inner: any optax gradient transformation (``sgd``, ``adam``, ``adamw``, a chain...).
      mask: a mask for the params (``bool`` leaves, ``None`` for never-pruned leaves), or
        ``None`` to use ``dense_mask(params)`` at ``init``.

    Returns:
      A ``GradientTransformationExtraArgs`` whose state is ``MaskedState(mask, inner_state)``.
      ``update(updates, state, params)`` returns ``-param`` for pruned weights when
      ``params`` is given, ``0`` otherwise; extra keyword arguments reach ``inner``.

    Raises:
      ValueError, TypeError: at ``init``, when the mask does not fit the params (the message
        names the leaf path).
    """
    inner = optax.with_extra_args_support(inner)

    def init_fn(params):
        m = dense_mask(params) if mask is None else mask
        validate_mask(m, params)
        return MaskedState(mask=m, inner_state=inner.init(params))

    def update_fn(updates, state, params=None, **extra_args):
        m = state.mask
        updates = jax.tree.map(_zero_pruned, m, updates, is_leaf=_is_none)
        updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
        if params is None:
            updates = jax.tree.map(_zero_pruned, m, updates, is_leaf=_is_none)
        else:
            updates = jax.tree.map(_land_on_zero, m, updates, params, is_leaf=_is_none)
        return updates, MaskedState(mask=m, inner_state=inner_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def get_mask(opt_state: optax.OptState) -> Mask:
    """The mask held by the one ``MaskedState`` inside ``opt_state`` (chains, nested...).

    Args:
      opt_state: an optax state tree containing exactly one ``MaskedState``.

    Returns:
      That state's mask.

    Raises:
      ValueError: no ``MaskedState`` in ``opt_state``, or more than one.
    """
    found = [s for s in jax.tree.leaves(opt_state, is_leaf=_is_masked) if _is_masked(s)]
    if len(found) != 1:
        raise ValueError(
            f"get_mask: expected exactly one MaskedState in the optimizer state, found "
            f"{len(found)}; build the optimizer with jaxticket.optim.masked(...)"
        )
    return found[0].mask


def replace_mask(opt_state: optax.OptState, mask: Mask) -> optax.OptState:
    """Puts ``mask`` into every ``MaskedState`` inside ``opt_state``; works under ``jit``.

    The new mask must match the old one's structure, ``None`` leaves and shapes (the old
    one was checked against the params at ``init``); checks use static shapes only.

    Args:
      opt_state: an optax state tree containing at least one ``MaskedState``.
      mask: the new mask.

    Returns:
      ``opt_state`` with the mask replaced; the inner optimizer state is unchanged.

    Raises:
      ValueError: no ``MaskedState`` found, or a structure / shape / ``None`` mismatch.
      TypeError: a new mask leaf that is not a ``bool`` array.
    """
    count = 0

    def swap(s):
        nonlocal count
        if not _is_masked(s):
            return s
        count += 1
        _check_same_layout(mask, s.mask)
        return s._replace(mask=mask)

    new_state = jax.tree.map(swap, opt_state, is_leaf=_is_masked)
    if count == 0:
        raise ValueError(
            "replace_mask: no MaskedState in the optimizer state; build the optimizer "
            "with jaxticket.optim.masked(...)"
        )
    return new_state


# --------------------------------------------------------------------------------------
# helpers


def _is_masked(x: Any) -> bool:
    return isinstance(x, MaskedState)


def _zero_pruned(m, u):
    # ``where`` rather than ``u * m``: 0 * inf would be nan, and the select fuses as well.
    return u if m is None or u is None else jnp.where(m, u, jnp.zeros((), u.dtype))


def _land_on_zero(m, u, p):
    # ``p + (-p)`` is exactly +0.0 in IEEE arithmetic, so the pruned weight lands on zero
    # even if it was not zero before this step.
    return u if m is None or u is None else jnp.where(m, u, -p)


def _check_same_layout(new: Mask, old: Mask) -> None:
    new_paths = leaves_with_paths(new, keep_none=True)
    old_paths = leaves_with_paths(old, keep_none=True)
    if [p for p, _ in new_paths] != [p for p, _ in old_paths]:
        raise ValueError(
            "replace_mask: the new mask's tree structure differs from the current mask's; "
            f"new leaves {[p for p, _ in new_paths][:8]}, current {[p for p, _ in old_paths][:8]}"
        )
    for (path, n), (_, o) in zip(new_paths, old_paths, strict=True):
        if (n is None) != (o is None):
            which = ("new", "current") if n is None else ("current", "new")
            raise ValueError(
                f"replace_mask: mask leaf {path!r} is None in the {which[0]} mask but "
                f"prunable in the {which[1]} one"
            )
        if n is None:
            continue
        if not (hasattr(n, "shape") and hasattr(n, "dtype")):
            raise TypeError(f"mask leaf {path!r}: expected a bool array or None, got {type(n)}")
        if n.dtype != jnp.bool_:
            raise TypeError(f"mask leaf {path!r}: expected dtype bool, got {n.dtype}")
        if tuple(n.shape) != tuple(o.shape):
            raise ValueError(
                f"mask leaf {path!r}: shape {tuple(n.shape)} does not match the current "
                f"mask's shape {tuple(o.shape)}"
            )
