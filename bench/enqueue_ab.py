"""A/B of the producer path between two checkouts of the library, alternating on one
redis-server.

    python -m bench.enqueue_ab <path/to/old/worker> <path/to/new/worker> [pairs] [tasks]

Enqueues as bench.run does (``python -m bench.enqueue``: ``enqueue_many`` of 1,000 a
call, then single ``enqueue`` calls, each timed after connecting) with the old tree,
then the new one, ``pairs`` times (default 3; 20,000 batched and a quarter as many
single tasks), so both see the same load on a shared machine. Prints one line per run
and the medians: tasks/s, Redis commands per task (inside Lua included) and
redis-server CPU µs per task for each mode, with the load average before each run.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from bench.redisserver import RedisServer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIELDS = ("batch_per_s", "batch_cmds", "batch_redis_us", "single_per_s", "single_cmds",
          "single_redis_us")


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def enqueue(redis: RedisServer, worker_dir: str, mode: str, n: int) -> tuple[float, ...]:
    """(tasks/s, Redis commands per task, redis-server CPU µs per task) of one mode."""
    redis.flush()
    env = dict(os.environ, BENCH_REDIS_URL=redis.url,
               PYTHONPATH=os.pathsep.join([worker_dir, REPO]))
    before, cpu0 = redis.commands(), redis.cpu_s()
    out = subprocess.run([sys.executable, "-m", "bench.enqueue", "kubetaskqueue", mode, str(n)],
                         env=env, cwd=REPO, check=True, capture_output=True, text=True)
    cpu = redis.cpu_s() - cpu0  # includes the child's start-up: a PING and a SCRIPT LOAD
    cmds = sum(RedisServer.delta(before, redis.commands()).values())
    seconds = float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])
    return n / seconds, cmds / n, cpu / n * 1e6


def main() -> None:
    old, new = sys.argv[1], sys.argv[2]
    pairs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 20_000
    redis = RedisServer()
    runs: dict[str, list[tuple[float, ...]]] = {"old": [], "new": []}
    try:
        for i in range(pairs):
            for name, tree in (("old", old), ("new", new)):
                load = loadavg()
                row = (*enqueue(redis, tree, "batch", n), *enqueue(redis, tree, "single", n // 4))
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
