"""Dramatiq with its RedisBroker and default middleware; no retries for the benchmark task."""

import time

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench import probe
from bench.apps import QUEUE, REDIS_URL, SLEEP_S, task_io

broker = RedisBroker(url=REDIS_URL)
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="work", queue_name=QUEUE, max_retries=0)
def work(payload: dict) -> None:
    probe.begin(payload)
    task_io()
    if SLEEP_S:
        time.sleep(SLEEP_S)
    probe.end()
