"""Read-only view of queue state: used by `kubetaskqueue stats`, the exporter and the operator."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from . import defaults
from .cluster import Client
from .keys import STAT_FIELDS, manager_key, managers_key, topics_key
from .store import RedisStore, TopicControls


@dataclass(frozen=True)
class TopicRateLimit:
    """A topic's rate limit as the managers declared it (ratelimit.py)."""

    text: str  # e.g. "10/s"
    per_s: float  # task starts it lets through per second
    slots: int  # the fewest task slots among the managers that declare it
    in_force: bool  # False: no live manager declares it now; the last one in force


@dataclass(frozen=True)
class TopicState:
    input: int
    scheduled: int
    scheduled_due: int  # scheduled tasks already due: ready, not yet promoted
    work: int
    dead: int
    oldest_ready_age_s: float | None  # None when nothing is ready
    oldest_dead_age_s: float | None
    counters: dict[str, int] = field(default_factory=dict)
    controls: TopicControls = field(default_factory=TopicControls)
    rate_limit: TopicRateLimit | None = None  # None: never limited
    mean_run_s: float | None = None  # moving average of successful attempts' run time
    # (kept for topics that have or had a rate limit)

    @property
    def paused(self) -> bool:
        return self.controls.paused


@dataclass(frozen=True)
class ManagerInfo:
    id: str
    pod: str
    slots: int
    busy: int
    topics: list[str]
    heartbeat_age_s: float


@dataclass(frozen=True)
class QueueState:
    topics: dict[str, TopicState]
    managers: list[ManagerInfo]
    redis_time: float

    def as_stats(self) -> dict[str, Any]:
        """The `stats --json` shape: per topic the four states, five counters (the
        olivere/taskqueue keys; README's glossary says what each counts), dead_dropped
        and whether it is paused."""
        topics: dict[str, dict[str, Any]] = {}
        for name, t in sorted(self.topics.items()):
            row: dict[str, Any] = {"input": t.input, "scheduled": t.scheduled, "work": t.work,
                                   "dead": t.dead}
            # lost and fenced are in the exporter's metrics only: the shape stays the original's.
            row.update({c: t.counters.get(c, 0) for c in STAT_FIELDS if c not in EXTRA_COUNTERS})
            row["paused"] = t.paused
            topics[name] = row
        return {"topics": topics, "managers": len(self.managers)}


EXTRA_COUNTERS = ("lost", "fenced")


def _age(now: float, raw: str) -> float | None:
    return max(0.0, now - float(raw)) if raw else None


def read_topic_state(store: RedisStore, topic: str) -> tuple[float, TopicState]:
    now, inp, sched, due, work, dead, oldest, dead_oldest, flat, rate = store.inspect(topic)
    now = float(now)
    counters = {flat[i]: int(flat[i + 1]) for i in range(0, len(flat), 2)}
    text, interval, slots, in_force, mean = rate
    limit = None
    if text and _positive(interval):
        limit = TopicRateLimit(text, 1.0 / float(interval),
                               int(slots) if str(slots).isdigit() else 1, in_force == "1")
    state = TopicState(int(inp), int(sched), int(due), int(work), int(dead),
                       _age(now, oldest), _age(now, dead_oldest), counters, rate_limit=limit,
                       mean_run_s=float(mean) if _positive(mean, allow_zero=True) else None)
    return now, state


def _positive(raw: str, *, allow_zero: bool = False) -> bool:
    try:
        value = float(raw)
    except ValueError:
        return False
    return value >= 0 if allow_zero else value > 0


def read_managers(client: Client, namespace: str, now: float) -> list[ManagerInfo]:
    """Live managers; entries whose hash expired (pod died) are pruned on the way."""
    ids: list[tuple[str, float]] = client.zrange(  # type: ignore[assignment]
        managers_key(namespace), 0, -1, withscores=True)
    if not ids:
        return []
    pipe = client.pipeline(transaction=False)
    for manager_id, _ in ids:
        pipe.hgetall(manager_key(namespace, manager_id))
    live, gone = [], []
    for (manager_id, beat), info in zip(ids, pipe.execute(), strict=True):
        if not info:
            gone.append(manager_id)
            continue
        live.append(ManagerInfo(
            id=manager_id, pod=info.get("pod", ""), slots=int(info.get("slots", 0)),
            busy=int(info.get("busy", 0)),
            topics=[t for t in info.get("topics", "").split(",") if t],
            heartbeat_age_s=max(0.0, now - beat),
        ))
    if gone:
        client.zrem(managers_key(namespace), *gone)
    return live


def known_topics(client: Client, namespace: str) -> list[str]:
    return sorted(str(t) for t in client.smembers(topics_key(namespace)))


def served_topics(managers: Iterable[ManagerInfo]) -> dict[str, list[ManagerInfo]]:
    """Topic -> the live managers serving it."""
    served: dict[str, list[ManagerInfo]] = {}
    for manager in managers:
        for topic in manager.topics:
            served.setdefault(topic, []).append(manager)
    return served


def read_queue_state(client: Client, namespace: str = defaults.NAMESPACE,
                     topics: Iterable[str] | None = None) -> QueueState:
    """Counts per state for ``topics`` (None = every topic ever enqueued to) and live managers."""
    store = RedisStore(client, namespace)
    names = known_topics(client, namespace) if topics is None else list(topics)
    states: dict[str, TopicState] = {}
    now = 0.0
    for name in names:
        now, states[name] = read_topic_state(store, name)
    for name, controls in store.read_controls(names).items():
        states[name] = replace(states[name], controls=controls)
    if not names:
        secs, micros = client.time()
        now = secs + micros / 1e6
    return QueueState(states, read_managers(client, namespace, now), now)


def read_lease_owners(client: Client, namespace: str, topics: Iterable[str]) -> dict[str, int]:
    """Manager id -> tasks it holds in work over ``topics``, read from the leases themselves
    (not from the heartbeat, which is up to lease TTL / 3 old)."""
    store = RedisStore(client, namespace)
    owners: dict[str, int] = {}
    for topic in topics:
        for manager_id, count in store.lease_owners(topic).items():
            owners[manager_id] = owners.get(manager_id, 0) + count
    return owners


def release_lost_managers(client: Client, namespace: str, topics: Iterable[str],
                          manager_ids: list[str], reason: str) -> tuple[int, int]:
    """The managers' pod died: their leases become worker losses now, with ``reason``.
    Each loss is capped by the lost managers' own max_worker_losses (their registry
    entry, while it lasts; else the default). Returns (requeued, dead) over ``topics``."""
    pipe = client.pipeline(transaction=False)
    for manager_id in manager_ids:
        pipe.hget(manager_key(namespace, manager_id), "max_worker_losses")
    known = [int(v) for v in pipe.execute() if v is not None and str(v).isdigit()]
    max_losses = min(known, default=defaults.MAX_WORKER_LOSSES)
    store = RedisStore(client, namespace)
    lost = dead = 0
    for topic in topics:
        topic_lost, topic_dead = store.release_lost_worker(topic, manager_ids, reason, max_losses)
        lost, dead = lost + topic_lost, dead + topic_dead
    return lost, dead
