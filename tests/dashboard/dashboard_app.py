"""The worker app the dashboard tests run as `kubetaskqueue worker dashboard_app:manager`.

``dash_fragile`` fails while the Redis key named in the payload exists, so a
test can make a task die, "fix the bug" (delete the key), requeue it from the
page and watch it complete.
"""

from __future__ import annotations

import os
import time

import redis
from kubetaskqueue import Manager, Task

manager = Manager()  # everything from KUBETASKQUEUE_* variables
_redis = redis.Redis.from_url(os.environ["KUBETASKQUEUE_REDIS_URL"], decode_responses=True)


@manager.processor("dash_work")
def work(task: Task) -> None:
    time.sleep(float(task.payload.get("s", 0)))


@manager.processor("dash_fragile")
def fragile(task: Task) -> None:
    flag = task.payload.get("broken_while")
    if flag and _redis.exists(flag):
        raise RuntimeError(task.payload.get("error", "broken"))
