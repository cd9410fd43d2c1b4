"""One task by id: where it is and what it holds (``Manager.task``), and deleting a
waiting one (``Manager.delete``). Both are one atomic script (task_info.lua,
task_delete.lua); the state comes from the task's hash and the work and scheduled
sets (``task_state`` in the prelude)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

from .store import RedisStore

TaskState = Literal["scheduled", "input", "work", "dead", "done"]
WAITING = ("scheduled", "input", "dead")  # the states a task can be deleted in


@dataclass(frozen=True)
class TaskInfo:
    """A snapshot of one task. Times are Redis server seconds since the epoch."""

    id: str
    topic: str
    state: TaskState  # done: succeeded, and its result is kept (keep_result_s)
    payload: Any  # the JSON payload, decoded (the raw text if it does not decode)
    attempts: int  # attempts started (a lost worker's attempt is not counted)
    num_retries: int
    losses: int  # times its worker was lost
    last_error: str  # message and traceback of the last failed attempt, or ""
    enqueued_at: float | None
    ready_at: float | None  # when it last became ready; for a scheduled task, when it is due
    claimed_at: float | None  # start of the latest attempt
    failed_at: float | None
    dead_at: float | None
    done_at: float | None
    owner: str  # work: the manager running it (<pod>-<8 hex>)
    lease_expires_at: float | None  # work: the lease's deadline
    timeout_s: float | None
    keep_result_s: float | None
    result: Any = None  # done: the processor's return value
    result_expires_in_s: float | None = None  # done: how long the result is still kept
    priority: int = 0  # -100..100, higher runs first

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _num(fields: dict[str, str], name: str) -> float | None:
    try:
        return float(fields[name]) if fields.get(name) else None
    except ValueError:  # edited by hand
        return None


def _decoded(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def lookup_task(store: RedisStore, topic: str, task_id: str) -> TaskInfo | None:
    """The task ``task_id`` of ``topic`` now, or None if the topic does not know it."""
    reply = store.task_info(topic, task_id)
    if not reply:
        return None
    state, flat, lease_deadline, ttl_ms = reply
    f = {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}
    done = state == "done"
    return TaskInfo(
        id=task_id, topic=topic, state=cast(TaskState, state),
        payload=_decoded(f.get("payload", "null")),
        attempts=int(_num(f, "attempts") or 0), num_retries=int(_num(f, "num_retries") or 0),
        losses=int(_num(f, "losses") or 0), last_error=f.get("last_error", ""),
        enqueued_at=_num(f, "enqueued_at"), ready_at=_num(f, "ready_at"),
        claimed_at=_num(f, "claimed_at"), failed_at=_num(f, "failed_at"),
        dead_at=_num(f, "dead_at"), done_at=_num(f, "done_at"),
        owner=f.get("owner", "") if state == "work" else "",
        lease_expires_at=float(lease_deadline) if lease_deadline else None,
        timeout_s=_num(f, "timeout_s"), keep_result_s=_num(f, "keep_result_s"),
        result=_decoded(f.get("result", "null")) if done else None,
        result_expires_in_s=int(ttl_ms) / 1000 if done and int(ttl_ms) >= 0 else None,
        priority=int(_num(f, "priority") or 0),
    )


def delete_task(store: RedisStore, topic: str, task_id: str) -> bool:
    """Delete a waiting task (scheduled, input or dead) for good: True. False for a task
    in work (its processor is running), a done one, or an unknown id."""
    return store.task_delete(topic, task_id) in WAITING
