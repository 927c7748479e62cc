"""Unstructured sparse inference: a masked network's kernels as ``jax.experimental.sparse`` BCOO.

``to_bcoo(params, mask)`` stores each masked kernel (a mask leaf that is not ``None``, on a
params leaf of two or more dimensions) as a ``BCOO`` holding exactly the mask's alive
entries; other masked leaves (biases, BatchNorm scales of a structured mask) stay dense with
the pruned entries zeroed, and unmasked leaves pass through. ``sparse_apply(model, params,
state, x)`` then runs the model's own ``apply`` (eval mode) with those leaves, through
``jax.experimental.sparse.sparsify``:

- dense layers (``dot_general`` with a BCOO kernel) become ``bcoo_dot_general``;
- convolutions with a BCOO kernel (any number of spatial dimensions, ``feature_group_count
  == 1``) are computed as image patches (``lax.conv_general_dilated_patches``) times the
  kernel reshaped to ``(in·window, out)``, a ``bcoo_dot_general`` (``sparsify``'s own BCOO
  convolution only takes one input and one output channel);
- everything else runs densely, as in ``apply``.

``sparsify`` fails on ``custom_jvp`` calls in this jax (0.10: ``KeyError: 'subfuns'``;
``jax.nn.relu`` is one), so the forward pass is traced once to a jaxpr and evaluated
equation by equation under ``sparsify``, nested calls (``jit``, ``custom_jvp`` /
``custom_vjp``) inlined: inference needs no derivative rules. The outputs equal the dense
masked network's (``apply(apply_mask(params, mask), ...)``) up to float rounding. Speed
(``benchmarks/bench_structured.py``): BCOO matmuls are gathers and scatter-adds, which beat
a dense matmul on CPU only at very high sparsity.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import sparse

from jaxticket._paths import (
    PathPatterns,
    as_patterns,
    check_patterns_exist,
    leaves_with_paths,
    map_with_path_str,
    matches,
    path_str,
)
from jaxticket.mask_checks import validate_mask, without_variables

_is_none = lambda x: x is None  # noqa: E731
_CALL_PARAMS = ("call_jaxpr", "jaxpr", "fun_jaxpr")
_INLINED = frozenset(
    {
        "pjit",
        "jit",
        "closed_call",
        "remat2",
        "core_call",
        "remat",
        "checkpoint",
        "custom_jvp_call",
        "custom_vjp_call",
        "custom_vjp_call_jaxpr",
    }
)
_MARK_KEEPING = ("convert_element_type", "copy", "copy_p")


def to_bcoo(params: Any, mask: Any, *, exclude: PathPatterns | None = None) -> Any:
    """The masked ``params`` with every masked kernel stored as a ``BCOO`` of its alive entries.

    Args:
      params: the parameter pytree (nested dicts of arrays, as ``Model.init`` gives).
      mask: a mask fitting ``params`` (bool leaves, ``None`` for leaves never pruned).
      exclude: glob patterns of leaf paths kept dense (masked) although masked, e.g.
        ``"embed/*"``: an embedding lookup is a gather, which ``sparsify`` cannot take
        from a BCOO table.

    Returns:
      A pytree like ``params``: a ``jax.experimental.sparse.BCOO`` (indices sorted and
      unique, ``nse`` = the leaf's alive count) where the mask leaf is not ``None`` and the
      params leaf has ``ndim >= 2``; the dense leaf times its mask for other masked leaves;
      the params leaf itself where the mask leaf is ``None``.

    Raises:
      ValueError: the mask does not fit ``params`` (structure or a leaf's shape; the message
        names the leaf), or an ``exclude`` pattern that names no leaf.
      TypeError: a mask leaf that is not a bool array.
    """
    validate_mask(mask, params)
    mask, params = without_variables(mask), without_variables(params)
    paths = [p for p, _ in leaves_with_paths(params)]
    check_patterns_exist(as_patterns(exclude), paths, "to_bcoo exclude")

    def export(path, m, p):
        if m is None or p is None:
            return p
        m_np = np.asarray(m)
        if np.ndim(p) < 2 or matches(path, exclude):
            return jnp.asarray(np.where(m_np, np.asarray(p), 0).astype(np.asarray(p).dtype))
        indices = np.stack(np.nonzero(m_np), axis=-1).astype(np.int32)
        data = np.asarray(p)[m_np]
        return sparse.BCOO(
            (jnp.asarray(data), jnp.asarray(indices.reshape(-1, m_np.ndim))),
            shape=tuple(m_np.shape),
            indices_sorted=True,
            unique_indices=True,
        )

    return map_with_path_str(export, mask, params)


def bcoo_paths(params: Any) -> list[str]:
    """The leaf paths of ``params`` stored as ``BCOO`` (``to_bcoo``'s sparse kernels)."""
    return [p for p, leaf in _leaves(params) if isinstance(leaf, sparse.BCOO)]


def sparse_apply(model: Any, params: Any, state: Any, x: jax.Array) -> jax.Array:
    """Eval-mode logits of ``model`` with ``to_bcoo`` params (BCOO kernels used as such).

    Jit it with the model closed over: ``jax.jit(functools.partial(sparse_apply, model))``.

    Args:
      model: the ``jaxticket.models.Model`` the params belong to.
      params: ``to_bcoo(params, mask)`` (plain arrays are accepted too).
      state: the model state (BatchNorm running statistics; ``{}`` when there are none).
      x: a batch of inputs, ``(batch, *model.input_shape)``.

    Returns:
      The logits, equal to ``model.apply(apply_mask(params, mask), state, x,
      train=False)[0]`` up to float rounding.

    Raises:
      NotImplementedError: a BCOO kernel reaches an operation ``sparsify`` has no rule for
        (an embedding lookup, a grouped convolution, a ``lax.scan`` / ``cond`` body that
        calls ``jax.nn.relu``); keep that leaf dense with ``to_bcoo(..., exclude=...)``.
    """
    template = jax.tree.map(_dense_spec, params, is_leaf=_is_sparse)

    def logits(p, s, inputs):
        return model.apply(p, s, inputs, train=False)[0]

    closed = jax.make_jaxpr(logits)(template, state, x)
    flat = jax.tree.leaves((params, state, x), is_leaf=_is_sparse)
    flags = [_is_sparse(leaf) for leaf in flat]
    run = sparse.sparsify(lambda *args: _eval_inlined(closed.jaxpr, closed.consts, args, flags))
    try:
        (out,) = run(*flat)
    except NotImplementedError as err:
        raise NotImplementedError(
            f"sparse_apply: an operation on a BCOO kernel of {bcoo_paths(params)} is not "
            f"supported by jax.experimental.sparse ({err}); keep that leaf dense with "
            "to_bcoo(..., exclude=...)"
        ) from None
    except KeyError as err:
        if err.args != ("subfuns",):
            raise
        raise NotImplementedError(
            "sparse_apply: a BCOO kernel is used inside a loop or conditional (lax.scan, "
            "while_loop, cond) whose body calls a custom_jvp function such as jax.nn.relu, "
            "which jax.experimental.sparse.sparsify cannot transform; keep the kernels used "
            "there dense with to_bcoo(..., exclude=...)"
        ) from None
    return out


def _eval_inlined(jaxpr, consts, args, flags) -> list:
    """Evaluates ``jaxpr`` with nested jit / custom-derivative calls inlined.

    ``flags`` marks the arguments that are BCOO under ``sparsify`` (whose tracing hides
    that); a mark follows a value through dtype conversions and copies, and a convolution
    whose kernel is marked is computed by ``_patches_conv``.
    """
    env: dict = {}
    marked: set = set()

    def read(v):
        return v.val if isinstance(v, jax.extend.core.Literal) else env[v]

    def is_marked(v):
        return not isinstance(v, jax.extend.core.Literal) and v in marked

    for var, val in zip(jaxpr.constvars, consts, strict=True):
        env[var] = val
    for var, val, flag in zip(jaxpr.invars, args, flags, strict=True):
        env[var] = val
        if flag:
            marked.add(var)
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        in_flags = [is_marked(v) for v in eqn.invars]
        inner = _inner_jaxpr(eqn)
        out_flags = [False] * len(eqn.outvars)
        if inner is not None:
            n = len(inner.jaxpr.invars)
            outs = _eval_inlined(inner.jaxpr, inner.consts, invals[-n:], in_flags[-n:])
            # a call returning a marked input unchanged (an identity jit) keeps the mark
            passed = dict(zip(inner.jaxpr.invars, in_flags[-n:], strict=True))
            out_flags = [
                not isinstance(o, jax.extend.core.Literal) and passed.get(o, False)
                for o in inner.jaxpr.outvars
            ]
        elif eqn.primitive is lax.conv_general_dilated_p and in_flags[1]:
            outs = [_patches_conv(invals[0], invals[1], **eqn.params)]
        else:
            out = eqn.primitive.bind(*invals, **eqn.params)
            outs = out if eqn.primitive.multiple_results else [out]
            if eqn.primitive.name in _MARK_KEEPING and in_flags[0]:
                out_flags = [True]
        for var, val, flag in zip(eqn.outvars, outs, out_flags, strict=True):
            env[var] = val
            if flag:
                marked.add(var)
    return [read(v) for v in jaxpr.outvars]


def _inner_jaxpr(eqn):
    """The body of a call that runs it once (jit, remat, custom derivatives), else None.

    Loops and conditionals (``scan``, ``while``, ``cond``) are bound as they are.
    """
    if eqn.primitive.name not in _INLINED:
        return None
    for name in _CALL_PARAMS:
        inner = eqn.params.get(name)
        if isinstance(inner, jax.extend.core.ClosedJaxpr):
            return inner
        if isinstance(inner, jax.extend.core.Jaxpr):
            return jax.extend.core.ClosedJaxpr(inner, ())
    return None


def _patches_conv(
    lhs,
    rhs,
    *,
    window_strides,
    padding,
    lhs_dilation,
    rhs_dilation,
    dimension_numbers,
    feature_group_count,
    batch_group_count,
    precision=None,
    preferred_element_type=None,
    **_,
):
    """A convolution with a sparse kernel as patches @ kernel (one ``bcoo_dot_general``)."""
    if feature_group_count != 1 or batch_group_count != 1:
        raise NotImplementedError(
            "sparse_apply: a grouped convolution (feature_group_count "
            f"{feature_group_count}, batch_group_count {batch_group_count}) with a BCOO kernel "
            "is not supported; keep that kernel dense (its mask leaf None)"
        )
    lhs_spec, rhs_spec, out_spec = dimension_numbers
    window = tuple(rhs.shape[d] for d in rhs_spec[2:])
    patches = lax.conv_general_dilated_patches(
        lhs,
        window,
        window_strides,
        padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers,
        precision=precision,
    )
    # Patch features are ordered (in channel, *window); the kernel is laid out to match.
    kernel = rhs.transpose((rhs_spec[1], *rhs_spec[2:], rhs_spec[0]))
    kernel = kernel.reshape((-1, rhs.shape[rhs_spec[0]]))
    feature = out_spec[1]
    out = lax.dot_general(
        patches,
        kernel,
        (((feature,), (0,)), ((), ())),
        preferred_element_type=preferred_element_type,
    )
    return jnp.moveaxis(out, -1, feature)


def _is_sparse(x) -> bool:
    return isinstance(x, sparse.JAXSparse)


def _dense_spec(leaf):
    if _is_sparse(leaf):
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype)
    return leaf


def _leaves(tree) -> list[tuple[str, Any]]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_sparse)
    return [(path_str(p), leaf) for p, leaf in flat]
