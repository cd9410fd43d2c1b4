"""A worker app the process tests run as `kubetaskqueue worker sample_app:manager`.

Every attempt records itself in Redis (``test:starts``, ``test:finishes``) so
tests can count each task id's runs across processes that get killed.
"""

from __future__ import annotations

import os
import signal
import time

import redis
from kubetaskqueue import Manager, Task

manager = Manager()  # everything from KUBETASKQUEUE_* variables
_log = redis.Redis.from_url(os.environ["KUBETASKQUEUE_REDIS_URL"], decode_responses=True)


def _record(kind: str, task: Task) -> None:
    # The record must survive the Redis outages some tests cause, or the test
    # would measure its own bookkeeping instead of the queue.
    for _ in range(300):
        try:
            _log.rpush(f"test:{kind}", f"{task.id} {task.attempt} {os.getpid()}")
            return
        except redis.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError("test recorder could not reach Redis for 30s")


@manager.processor("sleep")
def sleep(task: Task) -> None:
    _record("starts", task)
    time.sleep(float(task.payload["s"]))
    _record("finishes", task)


@manager.processor("suicide")
def suicide(task: Task) -> None:
    """A poison task: it kills its own worker process, like an OOM kill would."""
    _record("starts", task)
    os.kill(os.getpid(), signal.SIGKILL)
