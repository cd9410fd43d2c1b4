"""kubetaskqueue's example app: three topics, each showing a part of the model.

- ``email``: a sync processor (run in a thread pool) "sends" a message; an address
  without "@" fails every attempt, so the task retries, then goes dead.
- ``resize``: an async processor (run on the event loop); ``{"still_uploading": true}``
  makes the first attempt ask for a retry (``Retry``) instead of failing.
- ``example``: what the Helm chart's ``helm test`` and scaling demos enqueue:
  ``{"sleep_s": N}`` takes N seconds (at most 60), ``{"fail": "why"}`` always fails.

Run it against a local Redis as examples/README.md shows, or ``python3
kubetaskqueue_example.py`` to run a few tasks in this one process (no Redis needed).
The Helm chart mounts this same file (``worker.exampleApp``) and runs ``kubetaskqueue
worker kubetaskqueue_example:manager``. Every setting comes from the KUBETASKQUEUE_*
variables; without them Redis is redis://localhost:6379/0.
"""

from __future__ import annotations

import asyncio
import logging
import time

from kubetaskqueue import Manager, Retry, Task

log = logging.getLogger("kubetaskqueue_example")
log.setLevel(logging.INFO)  # the worker's log shows other loggers' warnings only

manager = Manager()  # settings from KUBETASKQUEUE_*; Redis at localhost:6379 by default


@manager.processor("email", timeout_s=30)
def send_email(task: Task) -> None:          # def -> thread pool
    to = task.payload["to"]
    if "@" not in to:                        # raise to fail the attempt
        raise ValueError(f"not an email address: {to!r}")
    log.info("sent %r to %s", task.payload.get("subject", ""), to)


@manager.processor("resize")
async def resize(task: Task) -> None:        # async def -> event loop
    if task.payload.get("still_uploading") and task.attempt == 1:
        raise Retry(delay_s=1)               # retry later, not logged as an error
    await asyncio.sleep(0.1)                 # the resizing itself
    log.info("resized %s to %d px", task.payload["image"], task.payload["width"])


MAX_SLEEP_S = 60.0


@manager.processor("example", timeout_s=MAX_SLEEP_S + 30)
def example(task: Task) -> None:
    payload = task.payload if isinstance(task.payload, dict) else {}
    sleep_s = min(float(payload.get("sleep_s", 0)), MAX_SLEEP_S)
    if sleep_s > 0:
        time.sleep(sleep_s)
    if payload.get("fail"):
        raise RuntimeError(str(payload["fail"]))
    log.info("example task %s done (attempt %d): %s", task.id, task.attempt, payload)


if __name__ == "__main__":  # everything in this one process, on the embedded store
    logging.basicConfig(format="%(message)s")
    manager.configure(redis_url="memory://example")
    manager.enqueue("email", {"to": "ann@example.com", "subject": "hello"})
    manager.enqueue("email", {"to": "nobody"}, num_retries=2)
    manager.enqueue("resize", {"image": "cat.png", "width": 128, "still_uploading": True},
                    num_retries=1)
    manager.run(burst=True)  # returns once every topic is empty
    for topic, counts in manager.stats()["topics"].items():
        print(f"{topic}: {counts['completed']} completed, {counts['dead']} dead")
