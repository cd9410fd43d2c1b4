"""Huey with RedisHuey (blocking BRPOP dequeue), results off."""

import time

from huey import RedisHuey

from bench import probe
from bench.apps import QUEUE, REDIS_URL, SLEEP_S, task_io

huey = RedisHuey(QUEUE, url=REDIS_URL, results=False)


@huey.task(name="work")
def work(payload: dict) -> None:
    probe.begin(payload)
    task_io()
    if SLEEP_S:
        time.sleep(SLEEP_S)
    probe.end()
