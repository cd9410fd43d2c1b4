"""Profile the kubetaskqueue worker on W1 (or W2) with py-spy; print where its samples go.

    bench/.venv/bin/python -m bench.profile [--tasks 20000] [--conc 16]
    bench/.venv/bin/python -m bench.profile --conc 64 --sleep-s 0.01     # W2

Writes the folded stacks to bench/results/ktq-w1.folded and
prints the functions with the largest inclusive and self share of samples.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time

from bench import probe
from bench.peers import PEERS
from bench.redisserver import RedisServer
from bench.workers import REPO


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=20_000)
    ap.add_argument("--conc", type=int, default=PEERS["kubetaskqueue"].conc_w1)
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--sleep-s", type=float, default=0.0, help="each task sleeps this long")
    ap.add_argument("--gil", action="store_true", help="sample only the thread holding the GIL")
    args = ap.parse_args()
    out = os.path.join(REPO, "bench", "results", "ktq-w1.folded")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    redis = RedisServer()
    probe_dir = tempfile.mkdtemp(prefix="bench-probe-")
    env = dict(os.environ, BENCH_REDIS_URL=redis.url, BENCH_CONC=str(args.conc),  # the working tree
               BENCH_SLEEP_S=str(args.sleep_s), BENCH_PROBE_DIR=probe_dir, PYTHONPATH=REPO)
    spy = None
    try:
        subprocess.run([sys.executable, "-m", "bench.enqueue", "kubetaskqueue", "batch",
                        str(args.tasks)], env=env, cwd=REPO, check=True, capture_output=True)
        argv = PEERS["kubetaskqueue"].worker_argv(args.conc, args.sleep_s > 0, 0)
        spy = subprocess.Popen(
            [os.path.join(os.path.dirname(sys.executable), "py-spy"), "record", "--nonblocking",
             "-r", str(args.rate), "-f", "raw", "-o", out, "--threads",
             *(["--gil"] if args.gil else []), "--", *argv],
            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        t0 = time.time()
        while probe.read(probe_dir)[0] < args.tasks:
            if spy.poll() is not None or time.time() - t0 > 300:
                raise RuntimeError("worker exited or took too long")
            time.sleep(0.01)
        _, first, last = probe.read(probe_dir)
        print(f"{args.tasks} tasks in {last - first:.2f}s steady "
              f"({args.tasks / (last - first):,.0f}/s) under py-spy at {args.rate} Hz")
    finally:
        if spy is not None:
            os.killpg(spy.pid, 2)  # SIGINT: py-spy writes its file and stops the worker
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(spy.pid, 9)
                spy.wait()
        redis.stop()
    summarise(out)


def summarise(path: str, top: int = 25) -> None:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            n = int(count)
            total += n
            frames = [fr.split(" (")[0] + " " + fr.split("/")[-1].rstrip(")")
                      for fr in stack.split(";")[1:]]  # first frame is the thread
            for fr in set(frames):
                inclusive[fr] += n
            if frames:
                own[frames[-1]] += n
    print(f"{total} samples (all threads, idle excluded)")
    for title, counter in (("inclusive", inclusive), ("self", own)):
        print(f"\n-- top {top} by {title} share --")
        for fr, n in counter.most_common(top):
            print(f"{100 * n / total:5.1f}%  {fr}")


if __name__ == "__main__":
    main()
