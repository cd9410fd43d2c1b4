"""arq: an async job; results not kept. ``python -m bench.apps.arq_app`` runs a worker
without the CLI's per-job INFO log lines (every peer runs with warnings-only logging)."""

import asyncio

from arq.connections import RedisSettings
from arq.worker import run_worker

from bench import probe
from bench.apps import CONC, QUEUE, REDIS_URL, SLEEP_S, task_io_async


async def work(ctx: dict, payload: dict) -> None:
    probe.begin(payload)
    await task_io_async()
    if SLEEP_S:
        await asyncio.sleep(SLEEP_S)
    probe.end()


class WorkerSettings:
    functions = [work]  # noqa: RUF012
    redis_settings = RedisSettings.from_dsn(REDIS_URL)
    queue_name = QUEUE
    max_jobs = CONC
    # arq reads at most queue_read_limit (default max(5 x max_jobs, 100)) jobs per poll and
    # sleeps poll_delay (default 0.5 s) between polls, so the default caps a worker near
    # 200 jobs/s; its docs name poll_delay as the knob. 0.05 s trades idle polling for speed.
    poll_delay = 0.05
    keep_result = 0
    handle_signals = True


if __name__ == "__main__":
    run_worker(WorkerSettings)
