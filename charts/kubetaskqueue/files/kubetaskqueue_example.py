"""The chart's example worker app (worker.exampleApp): serves topic "example".

The chart runs it as ``kubetaskqueue worker kubetaskqueue_example:manager``; every
setting comes from the KUBETASKQUEUE_* variables of the worker Deployment. A payload
``{"sleep_s": N}`` makes the task take N seconds (at most 60), so a burst of such
tasks shows the operator scaling the workers up and, after the window, down;
``{"fail": "why"}`` makes every attempt fail with that message (retries, then the
dead queue and its alert).
"""

from __future__ import annotations

import logging
import time

from kubetaskqueue import Manager, Task

MAX_SLEEP_S = 60.0

log = logging.getLogger("kubetaskqueue_example")
manager = Manager()


@manager.processor("example", timeout_s=MAX_SLEEP_S + 30)
def example(task: Task) -> None:
    payload = task.payload if isinstance(task.payload, dict) else {}
    sleep_s = min(float(payload.get("sleep_s", 0)), MAX_SLEEP_S)
    if sleep_s > 0:
        time.sleep(sleep_s)
    if payload.get("fail"):
        raise RuntimeError(str(payload["fail"]))
    log.info("example task %s done (attempt %d): %s", task.id, task.attempt, payload)
