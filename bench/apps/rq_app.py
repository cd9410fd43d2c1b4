"""RQ: the job function (SimpleWorker runs it in the worker process, no fork per job)."""

import time

from bench import probe
from bench.apps import SLEEP_S, task_io


def work(payload: dict) -> None:
    probe.begin(payload)
    task_io()
    if SLEEP_S:
        time.sleep(SLEEP_S)
    probe.end()
