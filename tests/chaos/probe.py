"""Reading queue state straight from the Redis schema (keys.py), and waiting on it."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import redis
from helpers import wait_until
from kubetaskqueue.keys import TopicKeys

__all__ = ["wait_until"]  # the scenarios import it from here, with the readers below

NS = "kubetaskqueue"


def client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True)


@dataclass(frozen=True)
class TopicState:
    input: int
    scheduled: int
    work: int
    dead: int
    counters: dict[str, int]

    def __getitem__(self, name: str) -> int:
        return self.counters.get(name, 0)

    @property
    def settled(self) -> bool:
        """Nothing ready, scheduled or in flight."""
        return self.input == self.scheduled == self.work == 0


def topic_state(r: redis.Redis, topic: str) -> TopicState:
    k = TopicKeys(NS, topic)
    pipe = r.pipeline(transaction=True)
    pipe.zcard(k.input).llen(k.legacy_input).zcard(k.scheduled).zcard(k.work).llen(k.dead)
    inp, legacy, sched, work, dead, stats = pipe.hgetall(k.stats).execute()
    return TopicState(inp + legacy, sched, work, dead, {f: int(v) for f, v in stats.items()})


def task_field(r: redis.Redis, topic: str, task_id: str, name: str) -> str | None:
    value = r.hget(TopicKeys(NS, topic).task(task_id), name)
    return None if value is None else str(value)


def leases_of(r: redis.Redis, topic: str, owner_prefix: str) -> list[str]:
    """Ids in ``topic``'s work set leased by a manager whose id starts with the prefix."""
    k = TopicKeys(NS, topic)
    ids = r.zrange(k.work, 0, -1)
    pipe = r.pipeline(transaction=False)
    for task_id in ids:
        pipe.hget(k.task(task_id), "owner")
    owners = pipe.execute()
    return [i for i, o in zip(ids, owners, strict=True) if (o or "").startswith(owner_prefix)]


@dataclass
class OrphanWatch:
    """Times how long leases of a dead worker stay in work, until reaped or re-claimed."""

    r: redis.Redis
    topic: str
    poll_s: float = 0.02
    pending: dict[str, tuple[float, str]] = field(default_factory=dict)  # id -> (kill, owner)
    sat_s: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def add(self, ids: list[str], owner_prefix: str, killed_at: float) -> None:
        with self._lock:
            for task_id in ids:
                self.pending[task_id] = (killed_at, owner_prefix)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="orphan-watch")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def max_sat_s(self) -> float:
        return max(self.sat_s, default=0.0)

    def _run(self) -> None:
        k = TopicKeys(NS, self.topic)
        while not self._stop.wait(self.poll_s):
            with self._lock:
                items = list(self.pending.items())
            if not items:
                continue
            pipe = self.r.pipeline(transaction=True)
            for task_id, _ in items:
                pipe.zscore(k.work, task_id).hget(k.task(task_id), "owner")
            replies = pipe.execute()
            now = time.monotonic()
            with self._lock:
                for n, (task_id, (killed_at, prefix)) in enumerate(items):
                    score, owner = replies[2 * n], replies[2 * n + 1]
                    if score is None or not (owner or "").startswith(prefix):
                        self.sat_s.append(now - killed_at)
                        del self.pending[task_id]
