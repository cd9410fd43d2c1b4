"""Task: what a processor receives."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

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
            return cls(id=row.id, topic=topic, payload=payload, attempt=row.attempts,
                       num_retries=int(row.num_retries), enqueued_at=float(row.enqueued_at),
                       timeout_s=timeout, ready_at=float(row.ready_at),
                       claimed_at=float(row.claimed_at),
                       lease_token=row.token)
        except (ValueError, TypeError, RecursionError) as exc:  # json.loads on deep nesting
            raise MalformedTaskError(
                f"task {row.id} in topic {topic!r} is malformed: {exc}") from exc
