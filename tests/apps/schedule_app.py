"""A worker app with one schedule, run by the schedule tests as `schedule_app:manager`.

Every run of the scheduled task records its fire time in Redis (``test:ticks``),
so a test can count fires across worker processes.
"""

from __future__ import annotations

import json
import os

import redis
from kubetaskqueue import Manager, Task

manager = Manager()  # everything from KUBETASKQUEUE_* variables
manager.schedule("tick", "ticks", {"hello": "world"},
                 every_s=float(os.environ.get("SCHEDULE_EVERY_S", "1")))
_log = redis.Redis.from_url(os.environ["KUBETASKQUEUE_REDIS_URL"], decode_responses=True)


@manager.processor("ticks")
def tick(task: Task) -> None:
    _log.rpush("test:ticks", json.dumps({"id": task.id, "pid": os.getpid(), **task.payload}))
