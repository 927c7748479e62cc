"""Dependency groups derived by tracing a model's ``apply`` (work in progress)."""

from __future__ import annotations

from typing import Any

from jaxticket.structured.groups import Group


def dependency_groups(
    model: Any, params: Any = None, state: Any = None, *, prune_outputs: bool = False
) -> tuple[Group, ...]:
    """The dependency groups of ``model`` (not implemented yet)."""
    raise NotImplementedError("dependency_groups is being written (issue 13, helper S1)")
