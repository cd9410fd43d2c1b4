"""Processors for tests/test_isolation.py. A child process imports them by name,
so they live at module level in a module the child can import (spawn passes it
the parent's sys.path, which holds tests/)."""

from __future__ import annotations

import functools
import json
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from kubetaskqueue import Manager, Retry, Task

# For `kubetaskqueue worker isolation_app:manager` (settings from KUBETASKQUEUE_*).
manager = Manager()


def work(task: Task) -> None:
    """Appends one JSON line about this attempt to payload["log"], then does payload["do"]."""
    with open(task.payload["log"], "a") as log:
        log.write(json.dumps({"id": task.id, "attempt": task.attempt, "pid": os.getpid(),
                              "at": time.time(), "payload": task.payload,
                              "num_retries": task.num_retries}) + "\n")
    do = task.payload.get("do", "ok")
    if do == "raise":
        raise RuntimeError(f"task {task.id} always raises")
    if do == "retry" and task.attempt == 1:
        raise Retry(delay_s=task.payload["delay_s"])
    if do == "sleep":
        time.sleep(task.payload["s"])
    if do == "exit":
        os._exit(3)
    if do == "kill":
        os.kill(os.getpid(), signal.SIGKILL)


manager.register("isolated", work, isolation="process")


async def async_work(task: Task) -> None:
    """Async processors cannot be process-isolated."""


def _logged(fn: Callable[[Task], Any]) -> Callable[[Task], Any]:
    @functools.wraps(fn)
    def wrapper(task: Task) -> Any:
        return fn(task)
    return wrapper


@_logged
def shadowed(task: Task) -> None:
    """The module name points at the wrapper: shadowed.__wrapped__ is not importable."""
