"""Pruning as composition: criterion (scores) ∘ allocation (counts) ∘ selection (mask)."""

from jaxticket.pruning.allocation import (
    Allocation,
    Group,
    LeafInfo,
    er,
    erk,
    erk_densities,
    fraction_of,
    global_,
)
from jaxticket.pruning.criteria import (
    Criterion,
    check_scores,
    count_nonfinite,
    magnitude,
    override,
    random,
    restrict_to_alive,
    snip,
    weighted_sum,
)
from jaxticket.pruning.grasp import grasp, grasp_loss, grasp_pruner
from jaxticket.pruning.layerwise import Layerwise, layerwise
from jaxticket.pruning.match_counts import CountsPruner, leaf_counts, match_counts
from jaxticket.pruning.pruner import (
    Pruner,
    magnitude_pruner,
    make_pruner,
    prune,
    random_pruner,
    snip_pruner,
)
from jaxticket.pruning.selection import Selection, TopK, n_m, neurons, unstructured
from jaxticket.pruning.synflow import synflow, synflow_prune
from jaxticket.pruning.topk import topk_mask

__all__ = [
    "grasp",
    "grasp_loss",
    "grasp_pruner",
    "Allocation",
    "CountsPruner",
    "Criterion",
    "Group",
    "LeafInfo",
    "Layerwise",
    "Pruner",
    "Selection",
    "TopK",
    "check_scores",
    "count_nonfinite",
    "er",
    "erk",
    "erk_densities",
    "fraction_of",
    "global_",
    "layerwise",
    "leaf_counts",
    "magnitude",
    "magnitude_pruner",
    "make_pruner",
    "match_counts",
    "n_m",
    "neurons",
    "override",
    "prune",
    "random",
    "random_pruner",
    "restrict_to_alive",
    "snip",
    "snip_pruner",
    "synflow",
    "synflow_prune",
    "topk_mask",
    "unstructured",
    "weighted_sum",
]
