"""The exception tree: one base class, and Retry for processors."""

from __future__ import annotations

import redis
from redis.exceptions import RedisClusterException


def error_line(text: str) -> str:
    """The line that says what went wrong: the last non-blank line of a traceback."""
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def redis_error_text(exc: Exception) -> str:
    """A Redis error with the hint that fits it: one that cannot reach the server asks
    whether it runs; a refused login or command (DB index out of range) speaks for itself."""
    if isinstance(exc, redis.AuthenticationError):
        return f"{exc} (check the user and password in the URL)"
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError | RedisClusterException):
        return f"{exc}; is it running? (set KUBETASKQUEUE_REDIS_URL)"
    return str(exc)


class KubeTaskQueueError(Exception):
    """Base class of every error kubetaskqueue raises."""


class ConfigError(KubeTaskQueueError):
    """A setting is wrong, or Redis is configured in a way that would lose tasks."""


class PayloadError(KubeTaskQueueError, ValueError):
    """A payload is not JSON-serialisable or exceeds the size cap; nothing was written."""


class DuplicateTaskError(KubeTaskQueueError, ValueError):
    """A task with the requested id already exists; nothing was written."""


class QueueFullError(KubeTaskQueueError):
    """An enqueue was refused for back-pressure: the topic holds ``max_queued`` tasks, or
    Redis memory is past ``max_memory_share`` of maxmemory. Nothing was written; retry later."""


class RedisUnavailableError(KubeTaskQueueError):
    """Redis cannot be reached."""


class TaskNotFoundError(KubeTaskQueueError, LookupError):
    """The topic does not know this task id (never enqueued, finished without a kept
    result or after it expired, or deleted)."""


class NoResultError(KubeTaskQueueError):
    """The task will not have a result: it died, or was enqueued without keep_result_s."""


class ResultTimeoutError(KubeTaskQueueError, TimeoutError):
    """The task has not finished within the wait."""


class Retry(Exception):
    """Raised by a processor to ask for a retry after ``delay_s`` seconds.

    The attempt counts against ``num_retries`` and is not logged as an error.
    """

    def __init__(self, delay_s: float = 0.0, reason: str = "") -> None:
        super().__init__(reason or f"retry requested in {delay_s}s")
        self.delay_s = max(0.0, float(delay_s))
