"""Structured pruning that really shrinks a network (issue 13): dependency groups first."""

from jaxticket.structured.groups import (
    Group,
    Member,
    check_groups,
    declare_groups,
    unit_indices,
)
from jaxticket.structured.trace_groups import dependency_groups

__all__ = [
    "Group",
    "Member",
    "check_groups",
    "declare_groups",
    "dependency_groups",
    "unit_indices",
]
