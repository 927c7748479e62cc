"""Pruning at initialization (SNIP, GraSP, SynFlow, random, magnitude) and its sanity checks."""

from jaxticket.at_init.methods import (
    METHODS,
    SNIP,
    GraSP,
    MagnitudeInit,
    RandomInit,
    SynFlow,
    draw_batch,
    get,
    negated,
)
from jaxticket.at_init.sanity import invert_scores, layerwise_shuffle, reinit

__all__ = [
    "METHODS",
    "SNIP",
    "GraSP",
    "MagnitudeInit",
    "RandomInit",
    "SynFlow",
    "draw_batch",
    "get",
    "invert_scores",
    "layerwise_shuffle",
    "negated",
    "reinit",
]
