"""Structured pruning that really shrinks a network (issue 13).

- Dependency groups: :func:`dependency_groups` (traced from ``apply``), or written by hand
  with :func:`declare_groups`; :class:`Group` / :class:`Member`, :func:`check_groups`.
- Structured masks: :func:`expand_keep`, :func:`keep_from_mask`, :func:`check_structured`.
- Compaction to a smaller dense network: :func:`compact`.
- Group scores (module :mod:`~jaxticket.structured.scores`) and pruning over groups:
  :func:`structured_pruner` / :class:`StructuredPruner`.
- PreCropping (:func:`precrop`, :func:`channel_counts`) and layer tickets
  (:func:`removable_blocks`, :func:`block_imp`, :func:`compact_blocks`).
- Unstructured sparse inference: :func:`to_bcoo` / :func:`sparse_apply`
  (``jax.experimental.sparse`` BCOO), and 2:4 export (:func:`pack_2_4`,
  :func:`export_2_4`, :func:`nm_matmul` where the GPU path exists).
"""

from jaxticket.structured import scores
from jaxticket.structured.compact import compact
from jaxticket.structured.groups import (
    Group,
    Member,
    check_groups,
    declare_groups,
    unit_indices,
)
from jaxticket.structured.layer_imp import block_imp
from jaxticket.structured.layers import compact_blocks, removable_blocks
from jaxticket.structured.masks import (
    check_structured,
    collapsed_groups,
    expand_keep,
    keep_from_mask,
)
from jaxticket.structured.nm_export import (
    NMKernel,
    export_2_4,
    nm_available,
    nm_matmul,
    pack_2_4,
    unpack_2_4,
)
from jaxticket.structured.precrop import channel_counts, precrop
from jaxticket.structured.pruner import (
    StructuredPruner,
    structured_dense_mask,
    structured_pruner,
)
from jaxticket.structured.sparse_inference import bcoo_paths, sparse_apply, to_bcoo
from jaxticket.structured.trace_groups import dependency_groups

__all__ = [
    "NMKernel",
    "bcoo_paths",
    "collapsed_groups",
    "export_2_4",
    "nm_available",
    "nm_matmul",
    "pack_2_4",
    "sparse_apply",
    "structured_dense_mask",
    "to_bcoo",
    "unpack_2_4",
    "Group",
    "Member",
    "StructuredPruner",
    "block_imp",
    "channel_counts",
    "check_groups",
    "check_structured",
    "compact",
    "compact_blocks",
    "declare_groups",
    "dependency_groups",
    "expand_keep",
    "keep_from_mask",
    "precrop",
    "removable_blocks",
    "scores",
    "structured_pruner",
    "unit_indices",
]
