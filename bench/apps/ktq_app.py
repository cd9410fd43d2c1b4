"""kubetaskqueue: one topic, a sync processor (thread per task, as the runner does)."""

import time

from kubetaskqueue import Manager, Task

from bench import probe
from bench.apps import CONC, QUEUE, REDIS_URL, SLEEP_S, task_io

manager = Manager(REDIS_URL, num_workers=CONC)


@manager.processor(QUEUE)
def work(task: Task) -> None:
    probe.begin(task.payload)
    task_io()
    if SLEEP_S:
        time.sleep(SLEEP_S)
    probe.end()
