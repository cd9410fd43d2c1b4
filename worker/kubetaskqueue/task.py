"""Task: what a processor receives; Outcome: what calling it came to."""

from __future__ import annotations

import dataclasses
import json
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import Retry
from .store import Claimed


class MalformedTaskError(ValueError):
    """A stored task cannot be decoded (hand-edited or corrupt); it goes dead at once."""


@dataclass(frozen=True)
class Task:
    id: str
    topic: str
    payload: Any
    attempt: int  # 1-based: 1 is the first attempt
    num_retries: int
    enqueued_at: float  # Redis server time, seconds since the epoch
    timeout_s: float | None = None
    ready_at: float = 0.0  # when it last became ready (enqueue, due, retry, release)
    claimed_at: float = 0.0  # when this attempt's lease began; both on the Redis clock
    lease_token: str = ""
    keep_result_s: float | None = None  # the processor's return value is kept this long
    priority: int = 0  # -100..100, higher runs first

    @property
    def wait_s(self) -> float:
        """How long the task was ready before this attempt started."""
        return max(0.0, self.claimed_at - self.ready_at)

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt > self.num_retries

    @classmethod
    def from_claim(cls, topic: str, row: Claimed) -> Task:
        try:
            payload = json.loads(row.payload)
            timeout = float(row.timeout_s) if row.timeout_s else None
            keep = float(row.keep_result_s) if row.keep_result_s else None
            fields = {"id": row.id, "topic": topic, "payload": payload, "attempt": row.attempts,
                      "num_retries": int(row.num_retries),
                      "enqueued_at": float(row.enqueued_at), "timeout_s": timeout,
                      "ready_at": float(row.ready_at), "claimed_at": float(row.claimed_at),
                      "lease_token": row.token, "keep_result_s": keep,
                      "priority": int(row.priority)}
        except (ValueError, TypeError, RecursionError) as exc:  # json.loads on deep nesting
            raise MalformedTaskError(
                f"task {row.id} in topic {topic!r} is malformed: {exc}") from exc
        # Every field set at once, past the frozen __setattr__ the generated __init__
        # calls once per field: that cost a third of a no-op task's claim.
        task = object.__new__(cls)
        task.__dict__.update(fields)
        return task

    def to_json(self) -> bytes:
        """Every field as JSON: how a task reaches a child process (nothing is pickled)."""
        return json.dumps(dataclasses.asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Task:
        return cls(**json.loads(data))


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to: ok (with the result, for a task that keeps it), or an
    error text and the retry delay it asks for."""

    error: str | None = None
    retry_delay_s: float | None = None  # None = use the backoff
    bury: bool = False  # can never succeed: dead at once
    result: str | None = None  # JSON text of the return value, if the task keeps it


_SUCCEEDED = Outcome()  # frozen: one for every success that keeps no result


def success(task: Task, value: Any) -> Outcome:
    """The processor returned ``value``: kept as JSON when the task keeps its result (a
    value JSON cannot hold fails the attempt), else dropped unlooked-at."""
    if task.keep_result_s is None:
        return _SUCCEEDED
    try:
        return Outcome(result=json.dumps(value, allow_nan=False, separators=(",", ":")))
    except (TypeError, ValueError, RecursionError) as exc:
        return Outcome(error=f"ResultError: task {task.id} keeps its result (keep_result_s), "
                             f"but the processor returned a value of type "
                             f"{type(value).__name__}, which is not JSON-serialisable: {exc}")


def oversized(outcome: Outcome, max_bytes: int) -> Outcome:
    """A result over the payload cap fails the attempt: Redis holds it in memory."""
    size = 0 if outcome.result is None else len(outcome.result.encode())
    if size <= max_bytes:
        return outcome
    return Outcome(error=f"ResultError: the result is {size} bytes as JSON, over the "
                         f"{max_bytes}-byte cap (max_payload_bytes); store large data "
                         "elsewhere and return a reference")


def call_processor(fn: Callable[[Task], Any], task: Task) -> Outcome:
    """Run a sync processor (in a task thread or a child process) and catch what it raises."""
    try:
        return success(task, fn(task))
    except Retry as exc:
        return Outcome(error=f"Retry: {exc}", retry_delay_s=exc.delay_s)
    except BaseException:  # SystemExit in a task thread must count as a failure too
        return Outcome(error=traceback.format_exc())
