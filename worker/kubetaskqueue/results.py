"""Task results: what a processor returned, for tasks enqueued with ``keep_result_s``.

On success the ack script keeps the task's hash for keep_result_s seconds (state
done) with the return value as JSON, and pushes to the task's done list, which
expires with it. A waiter blocks on that list instead of polling (BLMOVE of the
list onto itself: the push stays, so it wakes every waiter, and later ones at once).
It looks at the task again at least every ``recheck_s``, so a task that died or was
deleted meanwhile ends the wait too.
"""

from __future__ import annotations

import math
import time
from typing import Any

from .errors import NoResultError, ResultTimeoutError, TaskNotFoundError, error_line
from .store import RedisStore
from .task_info import lookup_task


def get_result(store: RedisStore, topic: str, task_id: str, wait_s: float | None = None,
               recheck_s: float = 2.0) -> Any:
    """The kept result of a task, waiting up to ``wait_s`` for it to finish (None or 0:
    look once). Raises TaskNotFoundError, NoResultError (died, or no keep_result_s) or
    ResultTimeoutError (still waiting or running)."""
    if wait_s is not None and (not isinstance(wait_s, int | float) or isinstance(wait_s, bool)
                               or not 0 <= wait_s < math.inf):
        raise ValueError(f"wait_s must be None or a finite number of seconds >= 0, "
                         f"got {wait_s!r}")
    deadline = time.monotonic() + (wait_s or 0.0)
    while True:
        info = lookup_task(store, topic, task_id)
        if info is None:
            raise TaskNotFoundError(
                f"topic {topic!r} has no task {task_id!r}: never enqueued, deleted, or "
                "finished (a kept result expires after keep_result_s)")
        if info.state == "done":
            return info.result
        if info.state == "dead":
            raise NoResultError(f"task {task_id} of {topic!r} died, so it has no result: "
                                f"{error_line(info.last_error)}")
        if info.keep_result_s is None:
            raise NoResultError(f"task {task_id} of {topic!r} was enqueued without "
                                "keep_result_s: its result is not kept")
        left = deadline - time.monotonic()
        if left <= 0:
            waited = f"within {wait_s:g}s" if wait_s else "yet"
            raise ResultTimeoutError(f"task {task_id} of {topic!r} has no result {waited}: "
                                     f"it is {info.state}")
        store.wait_done(topic, task_id, min(left, recheck_s))
