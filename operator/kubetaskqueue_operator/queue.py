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

from kubetaskqueue_operator.policy import RateLimited


class QueueReadError(Exception):
    """Redis could not be read; the message says where (with the password hidden)."""


@dataclass(frozen=True)
class QueueSnapshot:
    """Counts summed over the pool's topics, and who holds their leases."""

    input: int = 0
    scheduled: int = 0
    scheduled_due: int = 0
    work: int = 0
    dead: int = 0
    owners: Mapping[str, int] = field(default_factory=dict)  # manager id -> leases held
    topics: tuple[str, ...] = ()  # the topics read (all known ones when the pool names none)
    managers: int = 0
    paused_ready: int = 0  # ready in paused topics: nobody claims them, so not backlog
    rate_limited: tuple[RateLimited, ...] = ()  # the rate-limited topics among them

    @property
    def backlog(self) -> int:
        return self.input + self.scheduled_due + self.work


QueueReader = Callable[[str, str, "tuple[str, ...] | None"], QueueSnapshot]
# (url, key prefix, topics, manager ids, reason) -> (requeued, dead)
LossReleaser = Callable[[str, str, "tuple[str, ...]", "list[str]", str], "tuple[int, int]"]


def redact(url: str) -> str:
    """Hide the password of a Redis URL so it can go into logs, status and Events."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def snapshot_from_state(state: Any, topics: Iterable[str] | None,
                        owners: Mapping[str, int]) -> QueueSnapshot:
    """Sum a core ``QueueState`` (duck-typed) over ``topics`` (None = all). A paused
    topic adds only its tasks in work (and dead); its queued ones are ``paused_ready``."""
    wanted = None if topics is None else set(topics)
    totals = {"input": 0, "scheduled": 0, "scheduled_due": 0, "work": 0, "dead": 0}
    paused_ready = 0
    limited = []
    for name, topic in state.topics.items():
        if wanted is not None and name not in wanted:
            continue
        if getattr(topic, "paused", False):
            paused_ready += int(topic.input) + int(topic.scheduled_due)
            counted: tuple[str, ...] = ("work", "dead")
        else:
            counted = tuple(totals)
            served = any(name in m.topics for m in state.managers)
            if (limit := rate_limited(topic, served)) is not None:
                limited.append(limit)
        for key in counted:
            totals[key] += int(getattr(topic, key))
    names = tuple(n for n in state.topics if wanted is None or n in wanted)
    return QueueSnapshot(**totals, owners=dict(owners), topics=names,
                         managers=len(state.managers), paused_ready=paused_ready,
                         rate_limited=tuple(limited))


def rate_limited(topic: Any, served: bool) -> RateLimited | None:
    """A core ``TopicState``'s rate limit as the policy takes it, or None: no limit, or
    no task finished yet to tell its run time. The limit last in force counts while no
    live manager serves the topic (a pool at zero replicas), not once managers run
    without declaring one."""
    limit, mean_run_s = topic.rate_limit, topic.mean_run_s
    if limit is None or mean_run_s is None or not (limit.in_force or not served):
        return None
    return RateLimited(backlog=int(topic.input) + int(topic.scheduled_due) + int(topic.work),
                       rate_per_s=float(limit.per_s), mean_run_s=float(mean_run_s),
                       slots_per_pod=max(1, int(limit.slots)))


class RedisQueueReader:
    """A QueueReader on the core library; keeps one client per URL between polls."""

    def __init__(self) -> None:
        self._clients: dict[str, Any] = {}

    def _client(self, url: str) -> Any:
        from kubetaskqueue.connection import connect  # lazily: pure parts and tests need no core

        client = self._clients.get(url)
        if client is None:
            client = self._clients[url] = connect(url)
        return client

    def __call__(self, url: str, key_prefix: str, topics: tuple[str, ...] | None) -> QueueSnapshot:
        from kubetaskqueue.queue_state import read_lease_owners, read_queue_state

        try:
            client = self._client(url)
            state = read_queue_state(
                client, namespace=key_prefix, topics=list(topics) if topics else None
            )
            # Read in the same round as the decision: the heartbeat's busy count lags.
            owners = read_lease_owners(client, key_prefix, list(state.topics))
        except Exception as exc:
            self._clients.pop(url, None)  # reconnect next time
            raise QueueReadError(f"Redis at {redact(url)}: {exc}") from exc
        return snapshot_from_state(state, topics, owners)

    def release_lost(
        self, url: str, key_prefix: str, topics: tuple[str, ...], managers: list[str], reason: str
    ) -> tuple[int, int]:
        """Release dead managers' leases now (worker losses); returns (requeued, dead)."""
        from kubetaskqueue.queue_state import release_lost_managers

        try:
            lost, dead = release_lost_managers(
                self._client(url), key_prefix, topics, managers, reason
            )
        except Exception as exc:
            self._clients.pop(url, None)
            raise QueueReadError(f"Redis at {redact(url)}: {exc}") from exc
        return int(lost), int(dead)
