"""W1 A/B between two checkouts of the library, alternating on one redis-server.

    python -m bench.w1_ab <path/to/old/worker> <path/to/new/worker> [pairs] [tasks]

Runs W1 as bench.run does (tasks enqueued first in batches, then one worker
process with 16 slots, no-op tasks; bench/README.md) for the old tree, then the
new one, ``pairs`` times (default 3, 10,000 tasks), so both see the same load on
a shared machine. Needs only the core's own dependencies (no bench venv). Prints
one line per run and the medians: tasks/s from the first start to the last end,
Redis commands per task in the worker run (inside Lua included), redis-server
and worker CPU µs per task (the worker's from its first task start), with the
load average before each run. ``BENCH_STYLE=redis`` runs the other task style;
``BENCH_CONC=64 BENCH_SLEEP_S=0.01`` runs W2 instead;
``BENCH_KTQ_APP=bench.apps.ktq_async_app:manager`` the same task as an ``async def``
processor.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

from bench import probe
from bench.bytecode import precompile
from bench.redisserver import RedisServer, process_cpu_s

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def one_run(redis: RedisServer, worker_dir: str, n: int) -> dict[str, float]:
    redis.flush()
    probe_dir = tempfile.mkdtemp(prefix="bench-ab-")
    env = dict(os.environ, BENCH_REDIS_URL=redis.url, BENCH_PROBE_DIR=probe_dir,
               PYTHONPATH=os.pathsep.join([worker_dir, REPO]))
    env.setdefault("BENCH_CONC", "16")
    env.setdefault("BENCH_SLEEP_S", "0")
    subprocess.run([sys.executable, "-m", "bench.enqueue", "kubetaskqueue", "batch", str(n)],
                   env=env, cwd=REPO, check=True, capture_output=True)
    before, cpu0 = redis.commands(), redis.cpu_s()
    worker = subprocess.Popen(
        [sys.executable, "-m", "kubetaskqueue", "--log-format", "text", "worker",
         env.get("BENCH_KTQ_APP", "bench.apps.ktq_app:manager"), "--num-workers",
         env["BENCH_CONC"], "--http-port", "0"],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + max(120.0, n / 50)
        worker_cpu0: tuple[int, float] | None = None  # (tasks done, CPU s) at the first start
        while (done := probe.read(probe_dir))[0] < n:
            if time.monotonic() > deadline or worker.poll() is not None:
                raise RuntimeError(f"only {done[0]}/{n} tasks finished")
            if worker_cpu0 is None and done[1] is not None:
                worker_cpu0 = done[0], process_cpu_s(worker.pid)
            time.sleep(0.005)
        worker_cpu = process_cpu_s(worker.pid)
        time.sleep(0.3)  # let the last acks land
        cmds = sum(RedisServer.delta(before, redis.commands()).values())
        cpu = redis.cpu_s() - cpu0
    finally:
        worker.terminate()
        worker.wait(15)
    _, first, last = done
    assert first is not None and last is not None
    assert worker_cpu0 is not None
    return {"per_s": n / (last - first), "cmds_per_task": cmds / n,
            "redis_cpu_us_per_task": cpu / n * 1e6,
            "worker_cpu_us_per_task": (worker_cpu - worker_cpu0[1]) / (n - worker_cpu0[0]) * 1e6}



def main() -> None:
    old, new = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    for tree in (old, new):
        precompile(tree)
    pairs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 10_000
    redis = RedisServer()
    results: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    try:
        for pair in range(pairs):
            for name, tree in (("old", old), ("new", new)):
                load = loadavg()
                r = one_run(redis, tree, n)
                results[name].append(r)
                print(f"pair {pair + 1} {name}: {r['per_s']:,.0f} tasks/s, "
                      f"{r['cmds_per_task']:.2f} cmds/task, "
                      f"{r['redis_cpu_us_per_task']:.0f} µs redis CPU/task, "
                      f"{r['worker_cpu_us_per_task']:.0f} µs worker CPU/task (load {load})",
                      flush=True)
    finally:
        redis.stop()
    for name, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"median {name}: {med['per_s']:,.0f} tasks/s, {med['cmds_per_task']:.2f} "
              f"cmds/task, {med['redis_cpu_us_per_task']:.0f} µs redis CPU/task, "
              f"{med['worker_cpu_us_per_task']:.0f} µs worker CPU/task")


if __name__ == "__main__":
    main()
