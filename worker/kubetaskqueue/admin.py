"""What a human does with the dead queue: list, requeue, purge (CLI and dashboard use this)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from .store import RedisStore
from .task_info import lookup_task

_PAGE = 500  # dead ids read per round trip


@dataclass(frozen=True)
class DeadTask:
    id: str
    payload: str  # raw JSON text, as stored
    attempts: int
    num_retries: int
    last_error: str
    enqueued_at: float
    failed_at: float
    dead_at: float

    @classmethod
    def from_hash(cls, fields: dict[str, str]) -> DeadTask:
        def num(name: str) -> float:
            try:
                return float(fields.get(name) or 0)
            except ValueError:
                return 0.0

        return cls(id=fields.get("id", ""), payload=fields.get("payload", ""),
                   attempts=int(num("attempts")), num_retries=int(num("num_retries")),
                   last_error=fields.get("last_error", ""), enqueued_at=num("enqueued_at"),
                   failed_at=num("failed_at"), dead_at=num("dead_at"))

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()

    def decoded_payload(self) -> Any:
        """The payload as the processor saw it; a stored text that is not JSON (a
        hand-edited task went dead as malformed) comes back as that text."""
        try:
            return json.loads(self.payload)
        except (ValueError, RecursionError):
            return self.payload


def iter_dead(store: RedisStore, topic: str, error_contains: str | None = None
              ) -> Iterator[DeadTask]:
    """Dead tasks of ``topic``, newest first, optionally only those whose error contains a text."""
    k = store.keys(topic)
    start = 0
    while True:
        ids: list[str] = store.client.lrange(  # type: ignore[assignment]
            k.dead, start, start + _PAGE - 1)
        if not ids:
            return
        pipe = store.client.pipeline(transaction=False)
        for task_id in ids:
            pipe.hgetall(k.task(task_id))
        for task_id, fields in zip(ids, pipe.execute(), strict=True):
            task = DeadTask.from_hash({"id": task_id, **fields})
            if error_contains is None or error_contains in task.last_error:
                yield task
        start += _PAGE


def select_dead(store: RedisStore, topic: str, ids: list[str] | None,
                error_contains: str | None) -> list[str]:
    """The ids an action touches: the given ids (if dead), or all dead, filtered by error text."""
    wanted = None if ids is None else set(ids)
    return [t.id for t in iter_dead(store, topic, error_contains)
            if wanted is None or t.id in wanted]


def not_dead(store: RedisStore, topic: str, ids: list[str]) -> dict[str, str]:
    """The ids that are no dead task of ``topic``, each with where it is instead
    ("unknown": the topic has no such task)."""
    found = {task_id: lookup_task(store, topic, task_id) for task_id in dict.fromkeys(ids)}
    return {task_id: info.state if info else "unknown"
            for task_id, info in found.items() if info is None or info.state != "dead"}


def requeue_dead(store: RedisStore, topic: str, ids: list[str], dry_run: bool = False) -> int:
    """Move dead tasks back to input with a fresh retry budget; returns how many moved."""
    return _in_pages(store.dead_requeue, topic, ids, dry_run)


def purge_dead(store: RedisStore, topic: str, ids: list[str], dry_run: bool = False) -> int:
    """Delete dead tasks for good; returns how many were deleted."""
    return _in_pages(store.dead_purge, topic, ids, dry_run)


def _in_pages(action: Callable[[str, list[str]], int], topic: str, ids: list[str],
              dry_run: bool) -> int:
    """Apply a dead-queue script a page of ids at a time; a dry run only counts."""
    if dry_run:
        return len(ids)
    return sum(action(topic, ids[i:i + _PAGE]) for i in range(0, len(ids), _PAGE))


TaskState = Literal["pending", "completed", "dead"]


def task_state(store: RedisStore, topic: str, task_id: str) -> TaskState:
    """Where a task is now: acked tasks leave no trace (or keep ``done_at`` while their
    result is kept), dead ones keep ``dead_at``."""
    fields = store.client.hmget(store.keys(topic).task(task_id), ["id", "dead_at", "done_at"])
    if fields[0] is None or fields[2]:
        return "completed"
    return "dead" if fields[1] else "pending"


def wait_for_task(store: RedisStore, topic: str, task_id: str, timeout_s: float,
                  poll_s: float = 0.2) -> TaskState:
    """Poll until the task completed or died; returns "pending" if ``timeout_s`` ran out."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = task_state(store, topic, task_id)
        if state != "pending" or time.monotonic() >= deadline:
            return state
        time.sleep(poll_s)
