"""An optax wrapper that keeps pruned weights exactly zero, with the mask in its state.

``zero_pruned(inner)`` wraps any optax optimizer. Before the inner optimizer runs, gradients
of pruned weights are zeroed, so momentum buffers and Adam moments never build up for them;
afterwards, the update of a pruned weight is replaced by ``-param``, so ``param + update``
is exactly ``+0.0`` (IEEE: ``x + (-x) == +0``) whatever the inner optimizer did (momentum,
decoupled weight decay) and even if the incoming weight was not zero. ``update`` therefore
needs ``params``: without them it raises instead of letting pruned weights drift.

Not to be confused with ``optax.masked``, which applies a transformation to some leaves and
passes the others through unchanged: ``zero_pruned`` runs ``inner`` on every leaf and pins
the pruned *entries* to zero. (The old name ``masked`` and its state ``MaskedState`` remain
as deprecated aliases.)

The mask lives in the optimizer state (``PruneMaskState.mask``), not in the closure, so a
pruning schedule can swap it inside ``jax.jit`` with ``replace_mask``. The per-step path has
no ``lax.cond``: mask updates happen between steps (the train engine swaps the mask between
``lax.scan`` chunks), so a masked step costs what a dense one does (see
``benchmarks/RESULTS.md``, masked step).

It composes with ``optax.inject_hyperparams`` either way round: the state of
``zero_pruned(optax.inject_hyperparams(optax.adam)(learning_rate=1e-3))`` forwards
``.hyperparams`` to the inner state, and ``optax.tree_utils.tree_get(state,
"learning_rate")`` / ``tree_set(state, learning_rate=...)`` reach it.

Example::

    opt = jaxticket.zero_pruned(optax.adam(1e-3))
    opt_state = opt.init(params)                    # dense mask of the prunable leaves
    opt_state = replace_mask(opt_state, mask)       # start from a given mask
    updates, opt_state = opt.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)   # pruned weights are now exactly 0.0
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxticket._paths import leaves_with_paths
from jaxticket.masks import Mask, dense_mask, validate_mask

_is_none = lambda x: x is None  # noqa: E731  (keeps ``None`` mask leaves visible to tree_map)


class PruneMaskState(NamedTuple):
    """State of ``zero_pruned``: the current mask and the wrapped optimizer's state.

    ``hyperparams`` forwards to the inner state's (``optax.inject_hyperparams``), so
    ``state.hyperparams["learning_rate"]`` reads as it would without the wrapper.
    """

    mask: Mask
    inner_state: optax.OptState

    @property
    def hyperparams(self) -> dict[str, Any]:
        """The inner ``inject_hyperparams`` state's hyperparameters (found in chains too).

        Raises:
          AttributeError: the inner state holds no ``hyperparams``, or more than one.
        """
        found = [
            s
            for s in jax.tree.leaves(self.inner_state, is_leaf=_has_hyperparams)
            if _has_hyperparams(s)
        ]
        if len(found) != 1:
            raise AttributeError(
                f"PruneMaskState.hyperparams: the inner optimizer state holds {len(found)} "
                "hyperparams (expected exactly one; build the inner optimizer with "
                "optax.inject_hyperparams)"
            )
        return found[0].hyperparams


def zero_pruned(
    inner: optax.GradientTransformation, mask: Mask | None = None
) -> optax.GradientTransformationExtraArgs:
    """Wraps ``inner`` so that weights pruned by the mask stay exactly zero.

    The mask can be given here, or left ``None`` so that ``init`` starts from
    ``dense_mask(params)`` (every prunable leaf alive). To start from a mask known only when
    the state is built, use ``replace_mask(opt.init(params), mask)``: no separate
    ``init_with_mask`` is needed. Wrap the whole optimizer (``zero_pruned(optax.chain(...))``)
    so that no transformation after the wrapper can move a pruned weight.

    Args:
      inner: any optax gradient transformation (``sgd``, ``adam``, ``adamw``, a chain,
        ``optax.inject_hyperparams(...)``...).
      mask: a mask for the params (``bool`` leaves, ``None`` for never-pruned leaves), or
        ``None`` to use ``dense_mask(params)`` at ``init``.

    Returns:
      A ``GradientTransformationExtraArgs`` whose state is
      ``PruneMaskState(mask, inner_state)``. ``update(updates, state, params)`` returns
      ``-param`` for pruned weights; extra keyword arguments reach ``inner``.

    Raises:
      ValueError, TypeError: at ``init``, when the mask does not fit the params (the message
        names the leaf path). ValueError: ``update`` called without ``params``.
    """
    inner = optax.with_extra_args_support(inner)

    def init_fn(params):
        if _is_params_probe(params):
            # ``optax.tree_utils.tree_map_params`` (used by ``reset_optimizer_state``)
            # asks which parts of the state are copies of the params: the mask is not.
            return PruneMaskState(mask=_NotParams(), inner_state=inner.init(params))
        m = dense_mask(params) if mask is None else mask
        validate_mask(m, params)
        return PruneMaskState(mask=m, inner_state=inner.init(params))

    def update_fn(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError(
                "zero_pruned: update(updates, state) was called without params; zero_pruned "
                "needs params to keep pruned weights exactly at zero: call "
                "update(updates, state, params)"
            )
        m = state.mask
        updates = _map_masked(_zero_pruned, m, updates)
        updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
        updates = _map_masked(_land_on_zero, m, updates, params)
        return updates, PruneMaskState(mask=m, inner_state=inner_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


_DEPRECATED = {
    "masked": ("zero_pruned", zero_pruned),
    "MaskedState": ("PruneMaskState", PruneMaskState),
}


def __getattr__(name: str):
    # Deprecated aliases: the old names still work but say what to use instead.
    if name in _DEPRECATED:
        return deprecated_alias(name, stacklevel=3)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def deprecated_alias(name: str, *, stacklevel: int = 2):
    """The object behind the deprecated name ``name``, after a DeprecationWarning."""
    new_name, value = _DEPRECATED[name]
    warnings.warn(
        f"jaxticket.{name} is deprecated (easy to confuse with optax.masked, which means "
        f"the opposite); use jaxticket.{new_name}",
        DeprecationWarning,
        stacklevel=stacklevel,
    )
    return value


def get_mask(opt_state: optax.OptState) -> Mask:
    """The mask held by the one ``PruneMaskState`` inside ``opt_state`` (chains, nested...).

    Args:
      opt_state: an optax state tree containing exactly one ``PruneMaskState``.

    Returns:
      That state's mask.

    Raises:
      ValueError: no ``PruneMaskState`` in ``opt_state``, or more than one.
    """
    found = [s for s in jax.tree.leaves(opt_state, is_leaf=_is_masked) if _is_masked(s)]
    if len(found) != 1:
        raise ValueError(
            f"get_mask: expected exactly one PruneMaskState in the optimizer state, found "
            f"{len(found)}; build the optimizer with jaxticket.zero_pruned(...)"
        )
    return _plain_mask(found[0].mask)


def replace_mask(opt_state: optax.OptState, mask: Mask) -> optax.OptState:
    """Puts ``mask`` into every ``PruneMaskState`` inside ``opt_state``; works under ``jit``.

    The new mask must match the old one's structure, ``None`` leaves and shapes (the old
    one was checked against the params at ``init``); checks use static shapes only.

    Args:
      opt_state: an optax state tree containing at least one ``PruneMaskState``.
      mask: the new mask.

    Returns:
      ``opt_state`` with the mask replaced; the inner optimizer state is unchanged.

    Raises:
      ValueError: no ``PruneMaskState`` found, or a structure / shape / ``None`` mismatch.
      TypeError: a new mask leaf that is not a ``bool`` array.
    """
    count = 0

    def swap(s):
        nonlocal count
        if not _is_masked(s):
            return s
        count += 1
        _check_same_layout(mask, s.mask)
        return s._replace(mask=_in_variables_of(mask, s.mask))

    new_state = jax.tree.map(swap, opt_state, is_leaf=_is_masked)
    if count == 0:
        raise ValueError(
            "replace_mask: no PruneMaskState in the optimizer state; build the optimizer "
            "with jaxticket.zero_pruned(...)"
        )
    return new_state


# --------------------------------------------------------------------------------------
# helpers


class _NotParams:
    """The mask's place in the state ``init`` builds for ``tree_map_params``' probe."""


def _is_params_probe(params: Any) -> bool:
    # ``optax.tree_utils.tree_map_params`` calls ``init`` with an instance of its private,
    # childless ``_ParamsPlaceholder`` pytree and marks where it lands in the state.
    return type(params).__name__ == "_ParamsPlaceholder" and not jax.tree.leaves(params)


def _is_masked(x: Any) -> bool:
    return isinstance(x, PruneMaskState)


def _has_hyperparams(x: Any) -> bool:
    return not isinstance(x, PruneMaskState) and hasattr(x, "hyperparams")


def _map_masked(fn, mask, *trees):
    # ``jax.tree.map`` over the mask's leaves; where the trees hold NNX Variables (optax
    # used directly on an ``nnx.State`` of Params) ``fn`` sees their values and the
    # result keeps the first tree's wrapper, so updates keep the params' structure.
    def one(m, *xs):
        if m is None or not isinstance(xs[0], nnx.Variable):
            return fn(m, *xs)
        values = [x.get_value() if isinstance(x, nnx.Variable) else x for x in xs]
        return xs[0].copy(fn(m, *values))

    return jax.tree.map(one, mask, *trees, is_leaf=_is_none)


def _zero_pruned(m, u):
    # ``where`` rather than ``u * m``: 0 * inf would be nan, and the select fuses as well.
    return u if m is None or u is None else jnp.where(m, u, jnp.zeros((), u.dtype))


def _land_on_zero(m, u, p):
    # ``p + (-p)`` is exactly +0.0 in IEEE arithmetic, so the pruned weight lands on zero
    # even if it was not zero before this step.
    return u if m is None or u is None else jnp.where(m, u, -p)


def _plain_mask(mask: Mask) -> Mask:
    """``mask`` with any Flax NNX ``Variable`` wrappers removed: plain bool arrays or None.

    An ``nnx.Optimizer`` wraps every array of its optax state in ``OptVariable`` /
    ``OptArray``; a mask read out of it must not come back wearing those (or ``Param``).
    """
    return nnx.as_pure(mask)


def _in_variables_of(new: Mask, old: Mask) -> Mask:
    """The values of ``new`` in the ``nnx.Variable`` wrappers of ``old``, where it has any.

    In an ``nnx.Optimizer``'s ``opt_state`` the old mask's arrays sit in ``OptVariable`` /
    ``OptArray``; putting a mask built from ``nnx.state(model, nnx.Param)`` there as it is
    would add ``Param`` variables to the optimizer (its parameter count doubles). Each new
    leaf instead takes the old leaf's variable type and metadata. Plain optax states
    (no variables) get ``new`` unchanged.
    """
    is_var = lambda x: x is None or isinstance(x, nnx.Variable)  # noqa: E731
    old_leaves, treedef = jax.tree.flatten(old, is_leaf=is_var)
    if not any(isinstance(o, nnx.Variable) for o in old_leaves):
        return new
    new_leaves = jax.tree.leaves(_plain_mask(new), is_leaf=lambda x: x is None)
    if len(new_leaves) != len(old_leaves):  # _check_same_layout has compared the paths
        raise ValueError("replace_mask: the new mask's tree structure differs from the current")
    return jax.tree.unflatten(
        treedef,
        [
            o.copy(n) if isinstance(o, nnx.Variable) else n
            for n, o in zip(new_leaves, old_leaves, strict=True)
        ],
    )


def _check_same_layout(new: Mask, old: Mask, who: str = "replace_mask") -> None:
    new_paths = leaves_with_paths(new, keep_none=True)
    old_paths = leaves_with_paths(old, keep_none=True)
    if [p for p, _ in new_paths] != [p for p, _ in old_paths]:
        raise ValueError(
            f"{who}: the new mask's tree structure differs from the current mask's; "
            f"new leaves {[p for p, _ in new_paths][:8]}, current {[p for p, _ in old_paths][:8]}"
        )
    for (path, n), (_, o) in zip(new_paths, old_paths, strict=True):
        if (n is None) != (o is None):
            which = ("new", "current") if n is None else ("current", "new")
            raise ValueError(
                f"{who}: mask leaf {path!r} is None in the {which[0]} mask but "
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
