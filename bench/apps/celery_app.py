"""Celery with the Redis broker, tuned per its "Optimizing" guide for short tasks."""

import time

from celery import Celery

from bench import probe
from bench.apps import QUEUE, REDIS_URL, SLEEP_S, task_io

app = Celery("bench", broker=REDIS_URL)
app.conf.update(
    task_default_queue=QUEUE,
    task_ignore_result=True,  # no result backend: nothing to store per task
    task_acks_late=False,  # the default: ack on receipt
    worker_prefetch_multiplier=64,  # "many short tasks: set the multiplier high"
    worker_disable_rate_limits=True,  # no rate limits in use
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="work")
def work(payload: dict) -> None:
    probe.begin(payload)
    task_io()
    if SLEEP_S:
        time.sleep(SLEEP_S)
    probe.end()
