"""How to start each queue's worker and how to enqueue into it.

The harness imports only this module's table of commands; the enqueue functions
import a peer's app lazily, and run in ``python -m bench.enqueue`` subprocesses.
Each peer's configuration and the reason for it is documented in README.md.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

VENV_BIN = os.path.dirname(sys.executable)
CHUNK = 1000  # tasks per batch call, for every peer that has a batch API


def _bin(name: str) -> str:
    return os.path.join(VENV_BIN, name)


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    for i in range(0, len(items), CHUNK):
        yield items[i:i + CHUNK]


@dataclass(frozen=True)
class Peer:
    name: str
    dists: tuple[str, ...]  # distributions whose versions the report lists
    # (concurrency, io_bound, index) -> argv of one worker process
    worker_argv: Callable[[int, bool, int], list[str]]
    conc_w1: int  # tasks in flight in one process for W1, scale-out, latency, idle
    conc_w2: int | None  # for W2 (I/O); None = the peer has no in-process concurrency
    batch_api: str  # what "batch enqueue" means for this peer


# -- worker commands ---------------------------------------------------------------

def _ktq(conc: int, io: bool, idx: int) -> list[str]:
    return [_bin("kubetaskqueue"), "--log-format", "text", "worker",
            "bench.apps.ktq_app:manager", "--num-workers", str(conc), "--http-port", "0"]


def _celery(conc: int, io: bool, idx: int) -> list[str]:
    pool = ["-P", "threads", "-c", str(conc)] if io else ["-P", "solo"]
    return [_bin("celery"), "-A", "bench.apps.celery_app", "worker", *pool,
            "-n", f"bench{idx}-{uuid.uuid4().hex[:6]}@%h", "-l", "WARNING",
            "--without-gossip", "--without-mingle", "--without-heartbeat"]


def _rq(conc: int, io: bool, idx: int) -> list[str]:
    return [_bin("rq"), "worker", "-u", "BENCH_REDIS_URL",  # the harness fills in the URL
            "-w", "rq.worker.SimpleWorker", "--results-ttl", "0", "-q",
            "--logging_level", "WARNING", "bench"]


def _dramatiq(conc: int, io: bool, idx: int) -> list[str]:
    return [_bin("dramatiq"), "bench.apps.dramatiq_app", "-p", "1", "-t", str(conc),
            "-Q", "bench"]


def _arq(conc: int, io: bool, idx: int) -> list[str]:
    return [sys.executable, "-m", "bench.apps.arq_app"]


def _huey(conc: int, io: bool, idx: int) -> list[str]:
    return [_bin("huey_consumer"), "bench.apps.huey_app.huey", "-k", "thread",
            "-w", str(conc), "-n", "-q", "-C"]


PEERS: dict[str, Peer] = {p.name: p for p in [
    Peer("kubetaskqueue", ("kubetaskqueue", "redis", "hiredis"), _ktq, 16, 64,
         "enqueue_many (one Lua call per 1,000)"),
    Peer("celery", ("celery", "kombu"), _celery, 1, 64,
         "none: apply_async in a loop on one producer"),
    Peer("rq", ("rq",), _rq, 1, None, "Queue.enqueue_many in a pipeline per 1,000"),
    Peer("dramatiq", ("dramatiq",), _dramatiq, 8, 64, "none: send() in a loop"),
    Peer("arq", ("arq",), _arq, 64, 64, "none: enqueue_job x 1,000 with asyncio.gather"),
    Peer("huey", ("huey",), _huey, 1, 64, "none: task() calls in a loop"),
]}


# -- enqueue (runs in a subprocess, imports the peer's app) ------------------------

def enqueue(peer: str, payloads: list[dict[str, Any]], *, batch: bool,
            spacing_s: float = 0.0) -> float:
    """Enqueue ``payloads``; returns the seconds spent. With ``spacing_s`` each payload
    gets its enqueue wall time as ``t`` and calls are spaced (latency workload)."""
    fn = {"kubetaskqueue": _enq_ktq, "celery": _enq_celery, "rq": _enq_rq,
          "dramatiq": _enq_dramatiq, "arq": _enq_arq, "huey": _enq_huey}[peer]
    return fn(payloads, batch, spacing_s)


def _paced(payloads: list[dict[str, Any]], spacing_s: float) -> Iterator[dict[str, Any]]:
    next_at = time.perf_counter()
    for p in payloads:
        if spacing_s:
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            next_at += spacing_s
            p = {**p, "t": time.time()}
        yield p


def _enq_ktq(payloads: list[dict[str, Any]], batch: bool, spacing_s: float) -> float:
    from bench.apps.ktq_app import QUEUE, manager

    manager.store.client.ping()  # connect outside the timed part
    t0 = time.perf_counter()
    if batch:
        for chunk in _chunks(payloads):
            manager.enqueue_many(QUEUE, chunk)
    else:
        for p in _paced(payloads, spacing_s):
            manager.enqueue(QUEUE, p)
    return time.perf_counter() - t0


def _enq_celery(payloads: list[dict[str, Any]], batch: bool, spacing_s: float) -> float:
    from bench.apps.celery_app import app, work

    with app.producer_or_acquire() as producer:
        producer.connection.ensure_connection()
        t0 = time.perf_counter()
        for p in _paced(payloads, spacing_s):
            work.apply_async((p,), producer=producer)
        return time.perf_counter() - t0


def _enq_rq(payloads: list[dict[str, Any]], batch: bool, spacing_s: float) -> float:
    from redis import Redis
    from rq import Queue

    from bench.apps import QUEUE, REDIS_URL
    from bench.apps.rq_app import work

    queue = Queue(QUEUE, connection=Redis.from_url(REDIS_URL))
    queue.connection.ping()
    t0 = time.perf_counter()
    if batch:
        for chunk in _chunks(payloads):
            queue.enqueue_many([Queue.prepare_data(work, (p,), result_ttl=0) for p in chunk])
    else:
        for p in _paced(payloads, spacing_s):
            queue.enqueue(work, p, result_ttl=0)
    return time.perf_counter() - t0


def _enq_dramatiq(payloads: list[dict[str, Any]], batch: bool, spacing_s: float) -> float:
    from bench.apps.dramatiq_app import broker, work

    broker.client.ping()
    t0 = time.perf_counter()
    for p in _paced(payloads, spacing_s):
        work.send(p)
    return time.perf_counter() - t0


def _enq_arq(payloads: list[dict[str, Any]], batch: bool, spacing_s: float) -> float:
    from arq import create_pool

    from bench.apps.arq_app import WorkerSettings

    async def main() -> float:
        pool = await create_pool(WorkerSettings.redis_settings,
                                 default_queue_name=WorkerSettings.queue_name)
        await pool.ping()
        t0 = time.perf_counter()
        if batch:
            for chunk in _chunks(payloads):
                await asyncio.gather(*(pool.enqueue_job("work", p) for p in chunk))
        else:
            for p in _paced(payloads, spacing_s):
                await pool.enqueue_job("work", p)
        took = time.perf_counter() - t0
        await pool.aclose()
        return took

    return asyncio.run(main())


def _enq_huey(payloads: list[dict[str, Any]], batch: bool, spacing_s: float) -> float:
    from bench.apps.huey_app import huey, work

    huey.storage.conn.ping()
    t0 = time.perf_counter()
    for p in _paced(payloads, spacing_s):
        work(p)
    return time.perf_counter() - t0
