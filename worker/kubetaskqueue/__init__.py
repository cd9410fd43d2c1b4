"""kubetaskqueue: a lease-based task queue on Redis for Kubernetes."""

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
from .version import __version__

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
