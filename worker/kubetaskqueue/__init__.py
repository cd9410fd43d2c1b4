"""kubetaskqueue: a lease-based task queue on Redis for Kubernetes."""

from .errors import (
    ConfigError,
    DuplicateTaskError,
    KubeTaskQueueError,
    PayloadError,
    QueueFullError,
    RedisUnavailableError,
    Retry,
)
from .manager import Manager
from .task import Task
from .version import __version__

__all__ = [
    "ConfigError",
    "DuplicateTaskError",
    "KubeTaskQueueError",
    "Manager",
    "PayloadError",
    "QueueFullError",
    "RedisUnavailableError",
    "Retry",
    "Task",
    "__version__",
]
