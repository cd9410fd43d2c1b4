"""The ceiling: the benchmark's task body run by bare Python threads, with no queue.

    bench/.venv/bin/python -m bench.ceiling [--runs 3]

What one CPython process on this machine does with the W1 and W2 task bodies of
bench/apps (style redis: one INCR; W2: a 10 ms sleep) when a shared counter is all
that hands out the work: no claim, no ack, no Redis call besides the task's own. No
queue's worker can beat it with the same threads, so bench/README.md sets the
queues' figures beside it: how much of what this machine allows each one reaches.
Each case runs in a fresh interpreter, like a worker process.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import threading
import time

from bench.redisserver import RedisServer
from bench.workers import REPO

# (workload, threads, tasks, sleep_s): W1 on 1 and 2 threads and on our 16 slots; W2 on 64.
CASES = [("W1", 1, 20_000, 0.0), ("W1", 2, 20_000, 0.0), ("W1", 16, 20_000, 0.0),
         ("W2", 64, 19_200, 0.01)]


def run_case(threads: int, tasks: int, sleep_s: float) -> dict[str, float]:
    """In this (fresh) process: ``tasks`` task bodies on ``threads`` threads."""
    from bench.apps import task_io

    task_io()  # the client's connection is opened, as in a worker that has run a task
    counter = itertools.count()

    def loop() -> None:
        while next(counter) < tasks:
            task_io()
            if sleep_s:
                time.sleep(sleep_s)

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    began, cpu = time.monotonic(), time.process_time()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall_s = time.monotonic() - began
    return {"tasks_per_s": tasks / wall_s,
            "cpu_us_per_task": (time.process_time() - cpu) / tasks * 1e6}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--case", help=argparse.SUPPRESS)  # threads,tasks,sleep_s: one child run
    args = ap.parse_args()
    if args.case:
        threads, tasks, sleep_s = args.case.split(",")
        print(json.dumps(run_case(int(threads), int(tasks), float(sleep_s))))
        return
    redis = RedisServer()
    rows = []
    try:
        print(f"load before: {os.getloadavg()}")
        for style in ("noop", "redis"):
            for workload, threads, tasks, sleep_s in CASES:
                env = dict(os.environ, BENCH_REDIS_URL=redis.url, BENCH_STYLE=style,
                           PYTHONPATH=REPO)
                runs = [json.loads(subprocess.run(
                    [sys.executable, "-m", "bench.ceiling", "--case",
                     f"{threads},{tasks},{sleep_s}"], env=env, check=True,
                    capture_output=True, text=True).stdout) for _ in range(args.runs)]
                rows.append((workload, style, threads,
                             statistics.median(r["tasks_per_s"] for r in runs),
                             statistics.median(r["cpu_us_per_task"] for r in runs)))
        print(f"load after: {os.getloadavg()}")
    finally:
        redis.stop()
    print(f"\nmedian of {args.runs} runs, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("| workload | task | threads | tasks/s | CPU µs/task |")
    print("|---|---|---|---|---|")
    for workload, style, threads, rate, cpu_us in rows:
        print(f"| {workload} | {style} | {threads} | {rate:,.0f} | {cpu_us:.0f} |")


if __name__ == "__main__":
    main()
