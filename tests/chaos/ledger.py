"""The ledger: every attempt's start and finish, per task id, kept in a separate
redis-server that no scenario kills, so the record outlives the chaos it counts.

The worker app (apps/chaos_app.py) RPUSHes ``<id> <attempt> <pid> <wall time>``
to ``starts`` before running a task and to ``finishes`` after it ran.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

import redis


@dataclass(frozen=True)
class Event:
    task_id: str
    attempt: int
    pid: int
    at: float  # time.time() in the worker (same host clock as Redis TIME)


class Ledger:
    def __init__(self, url: str) -> None:
        self.url = url
        self.client = redis.Redis.from_url(url, decode_responses=True)

    def _events(self, kind: str) -> list[Event]:
        out = []
        for line in self.client.lrange(kind, 0, -1):
            task_id, attempt, pid, at = line.split()
            out.append(Event(task_id, int(attempt), int(pid), float(at)))
        return out

    def starts(self) -> list[Event]:
        return self._events("starts")

    def finishes(self) -> list[Event]:
        return self._events("finishes")

    def count(self, kind: str) -> int:
        return int(self.client.llen(kind))

    def starts_by_id(self) -> dict[str, list[Event]]:
        by_id: dict[str, list[Event]] = defaultdict(list)
        for event in self.starts():
            by_id[event.task_id].append(event)
        return by_id

    def start_counts(self) -> Counter[str]:
        return Counter(e.task_id for e in self.starts())

    def finished_ids(self) -> set[str]:
        return {e.task_id for e in self.finishes()}


def duplicates(counts: Counter[str]) -> int:
    """Extra runs: every start of an id beyond its first."""
    return sum(n - 1 for n in counts.values() if n > 1)
