"""Reading queue state from Redis, behind a narrow seam the handlers can replace in tests.

The handlers call a ``QueueReader``: (redis_url, key_prefix, topics) -> QueueSnapshot.
The real one, ``RedisQueueReader``, delegates to the core's
``kubetaskqueue.queue_state.read_queue_state`` so the Redis schema stays in one place
(worker/kubetaskqueue/keys.py); this module only sums and reshapes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


class QueueReadError(Exception):
    """Redis could not be read; the message says where (with the password hidden)."""


@dataclass(frozen=True)
class QueueSnapshot:
    """Counts summed over the pool's topics, plus busy slots per worker pod."""

    input: int = 0
    scheduled: int = 0
    scheduled_due: int = 0
    work: int = 0
    dead: int = 0
    busy_by_pod: Mapping[str, int] = field(default_factory=dict)
    managers: int = 0

    @property
    def backlog(self) -> int:
        return self.input + self.scheduled_due + self.work


QueueReader = Callable[[str, str, "tuple[str, ...] | None"], QueueSnapshot]


def redact(url: str) -> str:
    """Hide the password of a Redis URL so it can go into logs, status and Events."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def snapshot_from_state(state: Any, topics: Iterable[str] | None) -> QueueSnapshot:
    """Sum a core ``QueueState`` (duck-typed) over ``topics`` (None = all)."""
    wanted = None if topics is None else set(topics)
    totals = {"input": 0, "scheduled": 0, "scheduled_due": 0, "work": 0, "dead": 0}
    for name, topic in state.topics.items():
        if wanted is not None and name not in wanted:
            continue
        for key in totals:
            totals[key] += int(getattr(topic, key))
    busy: dict[str, int] = {}
    for manager in state.managers:
        # Several managers may share a pod; the pod's cost is their sum.
        busy[manager.pod] = busy.get(manager.pod, 0) + int(manager.busy)
    return QueueSnapshot(**totals, busy_by_pod=busy, managers=len(state.managers))


class RedisQueueReader:
    """A QueueReader on the core library; keeps one client per URL between polls."""

    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}

    def __call__(self, url: str, key_prefix: str, topics: tuple[str, ...] | None) -> QueueSnapshot:
        # Imported lazily: the operator's pure parts and tests do not need the core.
        from kubetaskqueue.queue_state import read_queue_state
        from kubetaskqueue.store import connect

        try:
            client = self._clients.get(url)
            if client is None:
                client = self._clients[url] = connect(url)
            state = read_queue_state(
                client, namespace=key_prefix, topics=list(topics) if topics else None
            )
        except Exception as exc:
            self._clients.pop(url, None)  # reconnect next time
            raise QueueReadError(f"Redis at {redact(url)}: {exc}") from exc
        return snapshot_from_state(state, topics)
