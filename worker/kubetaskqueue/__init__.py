"""kubetaskqueue: a lease-based task queue on Redis for Kubernetes."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:
    from .errors import (
        ConfigError,
        DuplicateTaskError,
        KubeTaskQueueError,
        NoResultError,
        PayloadError,
        QueueFullError,
        RedisUnavailableError,
        ResultTimeoutError,
        Retry,
        TaskNotFoundError,
    )
    from .manager import Manager
    from .task import Task
    from .task_info import TaskInfo

__all__ = [
    "ConfigError",
    "DuplicateTaskError",
    "KubeTaskQueueError",
    "Manager",
    "NoResultError",
    "PayloadError",
    "QueueFullError",
    "RedisUnavailableError",
    "ResultTimeoutError",
    "Retry",
    "Task",
    "TaskInfo",
    "TaskNotFoundError",
    "__version__",
]

# The public names are imported on first use (PEP 562): importing the package, as the
# `kubetaskqueue` command does before anything else, need not load redis, pydantic and
# prometheus_client (most of its start-up) for `--version` or `--help`.
_MODULE_OF = {"Manager": ".manager", "Task": ".task", "TaskInfo": ".task_info",
              **{name: ".errors" for name in __all__
                 if name.endswith("Error") or name == "Retry"}}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
