"""A/B of the producer path between two checkouts of the library, against one Redis.

    python bench/enqueue_ab.py <path/to/worker> [redis-url]

Prints the median of 5 runs: enqueue() of 3,000 single tasks, and enqueue_many()
of 10 x 2,000. Run it alternately with the old and the new tree's worker/ folder.
"""

from __future__ import annotations

import statistics
import sys
import time

sys.path.insert(0, sys.argv[1])  # the library under test wins over the installed one

import redis
from kubetaskqueue import Manager

URL = sys.argv[2] if len(sys.argv) > 2 else "redis://127.0.0.1:6379/9"


def single(m: Manager, n: int = 3000) -> float:
    start = time.perf_counter()
    for i in range(n):
        m.enqueue("ab", {"i": i})
    return n / (time.perf_counter() - start)


def batch(m: Manager, n: int = 2000, k: int = 10) -> float:
    start = time.perf_counter()
    for _ in range(k):
        m.enqueue_many("ab", [{"i": i} for i in range(n)])
    return n * k / (time.perf_counter() - start)


def main() -> None:
    r = redis.Redis.from_url(URL)
    r.flushdb()
    m = Manager(URL)
    singles, batches = [], []
    for _ in range(5):
        singles.append(single(m))
        batches.append(batch(m))
        r.flushdb()
    print(f"single {statistics.median(singles):.0f}/s batch {statistics.median(batches):.0f}/s")


if __name__ == "__main__":
    main()
