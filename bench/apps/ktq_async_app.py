"""kubetaskqueue with an ``async def`` processor: the same task on the worker's event loop.

Not one of bench.run's queues: bench.w1_ab runs it (``BENCH_KTQ_APP``) to measure the
async path, whose Redis call goes through ``redis.asyncio`` as arq's does.
"""

import asyncio

from kubetaskqueue import Manager, Task

from bench import probe
from bench.apps import CONC, QUEUE, REDIS_URL, SLEEP_S, task_io_async

manager = Manager(REDIS_URL, num_workers=CONC)


@manager.processor(QUEUE)
async def work(task: Task) -> None:
    probe.begin(task.payload)
    await task_io_async()
    if SLEEP_S:
        await asyncio.sleep(SLEEP_S)
    probe.end()
