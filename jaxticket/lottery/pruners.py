"""The pruners IMP uses, chosen by the config: magnitude over weights, or structured
magnitude over the model's dependency groups (``LotteryConfig.structure``)."""

from __future__ import annotations

from jaxticket._paths import matches
from jaxticket.lottery.config import ConfigError, LotteryConfig
from jaxticket.masks import dense_mask
from jaxticket.pruning import criteria, layerwise, magnitude_pruner, make_pruner
from jaxticket.structured import dependency_groups
from jaxticket.structured import scores as group_scores
from jaxticket.structured.pruner import StructuredPruner, structured_dense_mask

__all__ = ["imp_pruners"]


def imp_pruners(c: LotteryConfig, model, params, model_state):
    """IMP's pruner, the one-shot pruner and the dense mask they start from. One-shot: a
    requested sparsity is met exactly in total; layer rates become relative rates (global
    allocation is one threshold, exact already). Structured IMP: see ``_structured``."""
    if c.structure != "weights":
        return _structured(c, model, params, model_state)
    scale = dict(c.layer_rates) or None
    imp_pruner = magnitude_pruner(c.allocation, scale=scale, min_keep=c.min_keep)
    if c.allocation != "layerwise":
        return imp_pruner, imp_pruner, dense_mask(params)
    exact = layerwise(scale, exact_total=True)
    one_shot = make_pruner(criteria.magnitude, exact, min_keep=c.min_keep)
    return imp_pruner, one_shot, dense_mask(params)


def _structured(c: LotteryConfig, model, params, model_state):
    """Structured IMP: one ``StructuredPruner`` (group magnitude ``c.group_score``) over
    the model's dependency groups (the output group never pruned), and the structural
    dense mask (bias and BatchNorm leaves included, so every level's mask has one tree
    structure). ``layer_rates`` patterns match prunable group names; a pattern that
    matches only the never-pruned output group (the default ``output/*``) is moot and
    dropped; one matching no group at all is refused."""
    groups = dependency_groups(model, params, model_state)
    names = [g.name for g in groups if g.prunable]
    others = [g.name for g in groups if not g.prunable]
    scale = {}
    for pattern, factor in c.layer_rates:
        if any(matches(n, pattern) for n in names):
            scale[pattern] = factor
        elif not any(matches(n, pattern) for n in others):
            raise ConfigError(
                "layer_rates",
                f"layer_rates: pattern {pattern!r} matches no prunable group of {c.model!r}; "
                f"groups: {', '.join(names)}",
            )
    pruner = StructuredPruner(
        tuple(groups),
        group_scores.get(c.group_score),
        "layerwise" if c.allocation == "layerwise" else "global",
        min_keep=c.min_keep,
        scale=tuple(scale.items()) if c.allocation == "layerwise" else (),
    )
    return pruner, pruner, structured_dense_mask(groups, params)
