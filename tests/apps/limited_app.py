"""A worker app with a rate-limited topic, run as `kubetaskqueue worker limited_app:manager`.

Every start is recorded in Redis (``test:limited``) as ``id claimed_at wall pid``:
``claimed_at`` is the Redis clock the limit runs on, ``wall`` this process's clock
when the processor began.
"""

from __future__ import annotations

import os
import time

import redis
from kubetaskqueue import Manager, Task

manager = Manager()  # everything from KUBETASKQUEUE_* variables
_log = redis.Redis.from_url(os.environ["KUBETASKQUEUE_REDIS_URL"], decode_responses=True)


@manager.processor("limited", rate_limit=os.environ.get("TEST_RATE_LIMIT", "10/s"))
def limited(task: Task) -> None:
    _log.rpush("test:limited", f"{task.id} {task.claimed_at:.6f} {time.time():.6f} {os.getpid()}")
    time.sleep(float(task.payload["s"]))
