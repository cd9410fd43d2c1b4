"""Back-pressure on Redis memory: producers stop before Redis is full.

A Redis with ``maxmemory-policy noeviction`` (the only policy kubetaskqueue
accepts) that reaches ``maxmemory`` refuses every write: enqueues, and also the
acks and failure records of tasks that finished, so workers would hold results
they cannot record. Enqueues are therefore refused with ``QueueFullError``
once ``used_memory`` passes ``max_memory_share`` of ``maxmemory``, leaving the
rest for the state moves of tasks already queued.

``INFO memory`` costs a round trip, so each process trusts a reading for
``MEMORY_CHECK_INTERVAL_S`` (1 s): what it enqueues in that second can go past
the share, never past maxmemory itself (then Redis refuses the script, and the
store raises QueueFullError too). The per-topic ``max_queued`` check lives in
enqueue.lua instead, atomic with the write.
"""

from __future__ import annotations

import logging
import time

import redis
from redis.cluster import RedisCluster

from . import defaults
from .cluster import Client
from .errors import QueueFullError

log = logging.getLogger("kubetaskqueue")


class MemoryGuard:
    """Refuses enqueues while Redis memory is over ``max_share`` of maxmemory (0 = off)."""

    def __init__(self, client: Client, max_share: float,
                 interval_s: float = defaults.MEMORY_CHECK_INTERVAL_S) -> None:
        self._client = client
        self._max_share = max_share
        self._interval_s = interval_s
        # The embedded store has no maxmemory.
        self._off = max_share <= 0 or type(client).__module__.startswith("fakeredis")
        # Once: isinstance against RedisCluster (a Protocol) costs microseconds a call.
        self._cluster = client if isinstance(client, RedisCluster) else None
        self._readings: dict[str, tuple[float, int, int]] = {}  # node -> (at, used, max)

    def check(self, key: str) -> None:
        """Raise QueueFullError if the Redis node holding ``key`` is too full to enqueue."""
        if self._off:
            return
        node = None
        if self._cluster is not None:
            node = self._cluster.get_node_from_key(key)  # type: ignore[no-untyped-call]
        name = "" if node is None else str(node.name)
        now = time.monotonic()
        reading = self._readings.get(name)
        if reading is None or now - reading[0] >= self._interval_s:
            try:
                info = (self._client.info("memory") if node is None else
                        self._client.info("memory", target_nodes=node))
            except redis.ResponseError as exc:
                if not _info_unavailable(exc):
                    raise  # e.g. a bad DB index: the enqueue would fail the same way
                log.warning("cannot read Redis INFO memory (%s): enqueues are not checked "
                            "against maxmemory", exc)
                self._off = True
                return
            reading = (now, int(info.get("used_memory", 0)), int(info.get("maxmemory", 0)))
            self._readings[name] = reading
        _, used, limit = reading
        if limit > 0 and used > self._max_share * limit:
            raise QueueFullError(
                f"Redis memory is at {used / limit:.0%} of maxmemory ({_mib(used)} of "
                f"{_mib(limit)}), over max_memory_share {self._max_share:.0%}: enqueues are "
                "refused so finished tasks can still be recorded; nothing was enqueued "
                "(drain or purge queues, or raise maxmemory)")


def _info_unavailable(exc: redis.ResponseError) -> bool:
    """INFO renamed away or denied by an ACL, as some managed Redis services do."""
    return isinstance(exc, redis.exceptions.NoPermissionError) or (
        "unknown command" in str(exc).lower())


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"
