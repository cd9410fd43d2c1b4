"""A/B of the producer path between two checkouts of the library, alternating on one
redis-server.

    python -m bench.enqueue_ab <path/to/old/worker> <path/to/new/worker> [pairs] [tasks]

Enqueues as bench.run does (``python -m bench.enqueue``: ``enqueue_many`` of 1,000 a
call, then single ``enqueue`` calls, each timed after connecting) with the old tree,
then the new one, ``pairs`` times (default 3; 20,000 batched and a quarter as many
single tasks), so both see the same load on a shared machine; then, as bench.run's
latency step, one idle worker of the same tree (16 slots) and single enqueues 5 ms
apart (a fiftieth as many). Prints one line per run and the medians: tasks/s, Redis
commands per task (inside Lua included) and redis-server CPU µs per task for each
mode, p50 / p99 ms from enqueue to start, with the load average before each run.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from bench import probe
from bench.redisserver import RedisServer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIELDS = ("batch_per_s", "batch_cmds", "batch_redis_us", "single_per_s", "single_cmds",
          "single_redis_us", "p50_ms", "p99_ms")


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def _env(redis: RedisServer, worker_dir: str, probe_dir: str = "/nonexistent") -> dict[str, str]:
    return dict(os.environ, BENCH_REDIS_URL=redis.url, BENCH_CONC="16", BENCH_SLEEP_S="0",
                BENCH_PROBE_DIR=probe_dir, PYTHONPATH=os.pathsep.join([worker_dir, REPO]))


def _enqueue(env: dict[str, str], mode: str, n: int) -> float:
    out = subprocess.run([sys.executable, "-m", "bench.enqueue", "kubetaskqueue", mode, str(n)],
                         env=env, cwd=REPO, check=True, capture_output=True, text=True)
    return float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])


def enqueue(redis: RedisServer, worker_dir: str, mode: str, n: int) -> tuple[float, ...]:
    """(tasks/s, Redis commands per task, redis-server CPU µs per task) of one mode."""
    redis.flush()
    before, cpu0 = redis.commands(), redis.cpu_s()
    seconds = _enqueue(_env(redis, worker_dir), mode, n)
    cpu = redis.cpu_s() - cpu0  # includes the child's start-up: a PING and a SCRIPT LOAD
    cmds = sum(RedisServer.delta(before, redis.commands()).values())
    return n / seconds, cmds / n, cpu / n * 1e6


def _wait_done(probe_dir: str, n: int, worker: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while (done := probe.read(probe_dir)[0]) < n:
        if time.monotonic() > deadline or worker.poll() is not None:
            raise RuntimeError(f"only {done}/{n} tasks finished")
        time.sleep(0.005)


def latency(redis: RedisServer, worker_dir: str, n: int) -> tuple[float, float]:
    """p50 and p99 ms from enqueue to start, as bench.run's latency step."""
    redis.flush()
    probe_dir = tempfile.mkdtemp(prefix="bench-ab-")
    env = _env(redis, worker_dir, probe_dir)
    worker = subprocess.Popen(
        [sys.executable, "-m", "kubetaskqueue", "--log-format", "text", "worker",
         "bench.apps.ktq_app:manager", "--num-workers", "16", "--http-port", "0"],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _enqueue(env, "single", 1)  # warm-up: the worker is up and has run a task
        _wait_done(probe_dir, 1, worker)
        time.sleep(1.0)  # idle again
        _enqueue(env, "spaced", n)
        _wait_done(probe_dir, n + 1, worker)
    finally:
        worker.terminate()
        worker.wait(15)
    lat = sorted(probe.latencies(probe_dir))
    return 1e3 * lat[len(lat) // 2], 1e3 * lat[min(len(lat) - 1, int(len(lat) * 0.99))]


def main() -> None:
    old, new = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    pairs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 20_000
    redis = RedisServer()
    runs: dict[str, list[tuple[float, ...]]] = {"old": [], "new": []}
    try:
        for i in range(pairs):
            for name, tree in (("old", old), ("new", new)):
                load = loadavg()
                row = (*enqueue(redis, tree, "batch", n), *enqueue(redis, tree, "single", n // 4),
                       *latency(redis, tree, n // 50))
                runs[name].append(row)
                print(f"pair {i + 1} {name}: " + ", ".join(
                    f"{k} {v:,.2f}" for k, v in zip(FIELDS, row, strict=True))
                    + f"  (load {load})", flush=True)
    finally:
        redis.stop()
    for name, rows in runs.items():
        print(f"median {name}: " + ", ".join(
            f"{k} {statistics.median(r[j] for r in rows):,.2f}" for j, k in enumerate(FIELDS)))


if __name__ == "__main__":
    main()
