"""N:M (2:4) kernels packed for GPU sparse tensor cores: compressed values plus metadata.

A 2:4 kernel keeps two weights in every four consecutive inputs (the grouping
``jaxticket.pruning.n_m(2, 4)`` makes along a kernel's input axis). GPUs with sparse
tensor cores multiply such a matrix from its kept values and two-bit indices. JAX exposed
that path as ``jax.experimental.sparse.nm`` (``nm_pack`` for the metadata, ``nm_spmm`` for
the product, lowered to ``mhlo.sparse_dot`` on CUDA and ROCm only, inputs in bf16, f16 or
int8); some jax releases ship without it. ``pack_2_4`` builds its layout here, on the host:

- ``values``: the transposed kernel ``(out, in)`` with each row compressed to its kept
  entries, ``(out, in // 2)``, in input order;
- ``metadata``: ``uint16``, ``(out, in // 16)``: for every 16 consecutive inputs (four
  groups of four) the eight kept positions within their group (0-3), two bits each, the
  first in the lowest bits — the layout ``nm_pack`` produces.

``export_2_4(params, mask)`` packs every masked dense kernel of a network, ``unpack_2_4``
inverts a packing (for tests and for checking an export), and ``nm_matmul`` runs
``x @ kernel`` through ``nm_spmm`` where this jax has it and the device is a GPU.
"""

from __future__ import annotations

import importlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxticket._paths import leaves_with_paths
from jaxticket.mask_checks import validate_mask, without_variables

_N, _M = 2, 4
_BLOCK = 16  # inputs covered by one uint16 of metadata: 4 groups × 2 kept × 2 bits


class NMKernel(NamedTuple):
    """A 2:4 dense-layer kernel in the sparse tensor cores' layout (see the module doc).

    Attributes:
      values: ``(out, in // 2)`` kept weights, row per output unit, in input order.
      metadata: ``(out, in // 16)`` ``uint16`` two-bit positions of the kept weights.
      shape: the dense kernel's shape ``(in, out)``.
    """

    values: Any
    metadata: Any
    shape: tuple[int, int]


def pack_2_4(kernel: Any, mask: Any, *, name: str = "kernel") -> NMKernel:
    """Packs a dense-layer kernel ``(in, out)`` with a 2:4 mask along its input axis.

    Args:
      kernel: the ``(in, out)`` weights (pruned entries may hold anything: the mask decides).
      mask: bool ``(in, out)``: exactly two True in every four consecutive inputs.
      name: the leaf path, for error messages.

    Returns:
      The ``NMKernel``; values keep the kernel's dtype (cast to bf16 or f16 for ``nm_matmul``).

    Raises:
      ValueError: the shapes differ or are not 2-D, ``in`` is not a multiple of 16, or some
        group of four has other than two kept weights (the message names the leaf, the
        output unit and the inputs of the first such group).
    """
    w, m = np.asarray(kernel), np.asarray(mask)
    if w.ndim != 2 or m.shape != w.shape:
        raise ValueError(
            f"pack_2_4 {name!r}: expected a 2-D kernel (in, out) and a mask of the same shape, "
            f"got {w.shape} and {m.shape}"
        )
    if m.dtype != np.bool_:
        raise TypeError(f"pack_2_4 {name!r}: the mask must be bool, got {m.dtype}")
    n_in, n_out = w.shape
    if n_in % _BLOCK:
        raise ValueError(
            f"pack_2_4 {name!r}: the input axis ({n_in}) must be a multiple of {_BLOCK} "
            "(one uint16 of metadata covers 16 inputs)"
        )
    groups = m.T.reshape(n_out, n_in // _M, _M)  # (out, group, position)
    counts = groups.sum(-1)
    if np.any(counts != _N):
        unit, group = np.argwhere(counts != _N)[0]
        raise ValueError(
            f"pack_2_4 {name!r}: output unit {unit}, inputs {group * _M}-{group * _M + _M - 1} "
            f"keep {counts[unit, group]} weights, a 2:4 mask keeps exactly {_N} of every {_M}"
        )
    rows = w.T  # (out, in): the contracting axis minor, as the sparse operand needs it
    values = rows[m.T].reshape(n_out, n_in // 2)
    positions = np.nonzero(groups)[-1].reshape(n_out, n_in // _BLOCK, _BLOCK // 2)
    weights = (_M ** np.arange(_BLOCK // 2)).astype(np.int64)
    metadata = (positions.astype(np.int64) * weights).sum(-1).astype(np.uint16)
    return NMKernel(jnp.asarray(values), jnp.asarray(metadata), (n_in, n_out))


def export_2_4(params: Any, mask: Any) -> dict[str, NMKernel]:
    """``pack_2_4`` of every dense-layer kernel a 2:4 mask prunes, by leaf path.

    Args:
      params: the parameter pytree.
      mask: a mask fitting ``params`` whose non-``None`` leaves are 2-D ``(in, out)`` 2:4
        masks (``jaxticket.pruning.n_m(2, 4)`` with its default axis makes them).

    Returns:
      ``{leaf path: NMKernel}``.

    Raises:
      ValueError: the mask does not fit ``params``, a masked leaf is not 2-D (a conv kernel:
        the N:M matmul takes matrices), or a leaf's mask is not 2:4 (names the leaf).
    """
    validate_mask(mask, params)
    mask, params = without_variables(mask), without_variables(params)
    values = dict(leaves_with_paths(params))
    out = {}
    for path, m in leaves_with_paths(mask):
        if np.ndim(m) != 2:
            raise ValueError(
                f"export_2_4 {path!r}: only dense-layer kernels (in, out) are exported, got a "
                f"masked leaf of shape {tuple(np.shape(m))}; leave it out of the mask (None)"
            )
        out[path] = pack_2_4(values[path], m, name=path)
    return out


def unpack_2_4(packed: NMKernel) -> np.ndarray:
    """The dense ``(in, out)`` kernel of a ``pack_2_4`` result (pruned entries 0)."""
    n_in, n_out = packed.shape
    meta = np.asarray(packed.metadata).astype(np.int64)[..., None]
    positions = (meta >> (2 * np.arange(_BLOCK // 2))) & (_M - 1)  # (out, in//16, 8)
    group = np.arange(_BLOCK // 2) // _N  # which of the block's four groups
    cols = (np.arange(n_in // _BLOCK)[:, None] * _BLOCK + group * _M)[None] + positions
    rows = np.zeros((n_out, n_in), dtype=np.asarray(packed.values).dtype)
    np.put_along_axis(
        rows, cols.reshape(n_out, -1), np.asarray(packed.values).reshape(n_out, -1), axis=1
    )
    return rows.T


def nm_available() -> bool:
    """True when this jax has ``jax.experimental.sparse.nm`` and the default device is a GPU."""
    return _nm_module() is not None and jax.devices()[0].platform == "gpu"


def nm_matmul(x: jax.Array, packed: NMKernel, *, dtype: Any = jnp.bfloat16) -> jax.Array:
    """``x @ kernel`` for a ``pack_2_4`` kernel on the GPU's 2:4 path (``nm_spmm``).

    Args:
      x: ``(batch, in)`` inputs.
      packed: a ``pack_2_4`` kernel.
      dtype: the input dtype of the product (``nm_spmm`` takes bf16, f16 or int8).

    Returns:
      ``(batch, out)`` float32.

    Raises:
      NotImplementedError: this jax has no ``jax.experimental.sparse.nm`` or the device is
        not a GPU.
    """
    nm = _nm_module()
    if nm is None:
        raise NotImplementedError(
            f"nm_matmul: jax {jax.__version__} has no jax.experimental.sparse.nm (the N:M "
            "sparse tensor-core path); the packed kernel still unpacks with unpack_2_4"
        )
    if jax.devices()[0].platform != "gpu":
        raise NotImplementedError(
            f"nm_matmul: the N:M path runs on GPUs only, the device is {jax.devices()[0]}"
        )
    return nm.nm_spmm(
        jnp.asarray(x, dtype),
        jnp.asarray(packed.values, dtype),
        jnp.asarray(packed.metadata),
        dimension_numbers=(((1,), (1,)), ((), ())),
        sparse_operand_idx=1,
        output_dtype=jnp.float32,
    )


def _nm_module():
    try:
        return importlib.import_module("jax.experimental.sparse.nm")
    except ImportError:
        return None
