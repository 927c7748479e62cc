"""The run store moved to ``jaxticket.workflow.store`` (every workflow uses it); this
module re-exports its public names so existing imports keep working."""

from jaxticket.workflow.store import (  # noqa: F401
    BrokenLevelWarning,
    RunDirectoryBusyError,
    RunStore,
    StorageError,
    config_digest,
    flatten_tree,
    unflatten_into,
)

__all__ = [
    "BrokenLevelWarning",
    "RunDirectoryBusyError",
    "RunStore",
    "StorageError",
    "config_digest",
    "flatten_tree",
    "unflatten_into",
]
