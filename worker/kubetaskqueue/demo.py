"""`kubetaskqueue demo`: a few topics with some failing tasks, on the embedded store."""

from __future__ import annotations

import asyncio
import random
import sys
import time
import uuid
from collections import Counter
from typing import Any

import click

from .admin import iter_dead
from .errors import error_line
from .manager import Manager
from .task import Task


def build_demo_manager(url: str) -> Manager:
    manager = Manager(url, num_workers=8, poll_interval_s=0.1, lease_ttl_s=10.0)

    @manager.processor("email")
    def send_email(task: Task) -> None:
        time.sleep(random.uniform(0.001, 0.01))
        if random.random() < 0.2:  # a flaky mail server: retries usually fix it
            raise ConnectionError("mail server timed out")

    @manager.processor("thumbnail", timeout_s=1.0)
    def make_thumbnail(task: Task) -> None:
        if task.payload["width"] <= 0:
            raise ValueError(f"cannot resize to width {task.payload['width']}")
        time.sleep(random.uniform(0.002, 0.02))

    @manager.processor("report")
    async def build_report(task: Task) -> None:
        await asyncio.sleep(random.uniform(0.005, 0.03))

    return manager


def run_demo(num_tasks: int) -> tuple[dict[str, Any], list[tuple[str, str, int]]]:
    """Enqueue ``num_tasks`` tasks, run them to the end with a progress bar.

    Returns the final stats and (topic, last error line, count) for the dead tasks.
    """
    manager = build_demo_manager(f"memory://demo-{uuid.uuid4().hex}")
    topics = ["email", "thumbnail", "report"]
    for i in range(num_tasks):
        topic = topics[i % 3]
        payload: dict[str, Any] = {"n": i}
        if topic == "thumbnail":
            payload["width"] = -1 if i % 30 == 1 else 128  # a few bad inputs end dead
        manager.enqueue(topic, payload, num_retries=3)
    manager.start(burst=True)
    with click.progressbar(length=num_tasks, label="processing", file=sys.stderr) as bar:
        done = 0
        while done < num_tasks:
            counts = manager.stats()["topics"]
            now_done = sum(t["completed"] + t["failed"] for t in counts.values())
            bar.update(now_done - done)
            done = now_done
            time.sleep(0.05)
    manager.stop()
    reasons = Counter((topic, error_line(dead.last_error))
                      for topic in topics for dead in iter_dead(manager.store, topic))
    return manager.stats(), [(t, r, n) for (t, r), n in sorted(reasons.items())]
