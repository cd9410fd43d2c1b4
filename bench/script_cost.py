"""Redis-side cost of the enqueue, claim and ack scripts, A/B between checkouts of the library.

    python bench/script_cost.py <path/to/worker> [redis-url] [KEY=VALUE setting...]

Runs 3,000 single enqueues, 20 batches of 1,000, claims of 16 until the topic is
empty and acks of those 16 at a time (as the ack thread sends them), and prints
Redis' own microseconds per EVALSHA for each (INFO commandstats,
reset before each phase). Redis runs the scripts on one thread, so these numbers
move much less with other load on the machine than client-side rates do. Settings
(e.g. max_queued=1000000) go to the Manager.
"""

from __future__ import annotations

import inspect
import sys

sys.path.insert(0, sys.argv[1])  # the library under test wins over the installed one

import redis
from kubetaskqueue import Manager

URL = sys.argv[2] if len(sys.argv) > 2 else "redis://127.0.0.1:6379/9"
SETTINGS = dict(arg.split("=", 1) for arg in sys.argv[3:])


def usec_per_evalsha(r: redis.Redis) -> tuple[float, int]:
    stats = r.info("commandstats").get("cmdstat_evalsha", {})
    return float(stats.get("usec_per_call", 0.0)), int(stats.get("calls", 0))


def main() -> None:
    r = redis.Redis.from_url(URL)
    r.flushdb()
    m = Manager(URL, **SETTINGS)  # type: ignore[arg-type]
    m.enqueue("warm", 0)  # loads the scripts
    claimed: list[list[tuple[str, str]]] = []

    def claim_all() -> None:
        while rows := m.store.claim("cost", 16, 60.0, "bench")[1]:
            claimed.append([(row.id, row.token) for row in rows])

    # Newer trees take the attempts' run time (the topic's mean, for the operator).
    timed = "run_s" in inspect.signature(m.store.ack_many).parameters

    def ack_all() -> None:
        for leases in claimed:
            m.store.ack_many("cost", leases, **({"run_s": 0.016} if timed else {}))

    phases = {
        "enqueue single": lambda: [m.enqueue("cost", {"i": i}) for i in range(3000)],
        "enqueue batch of 1000": lambda: [m.enqueue_many("cost", [{"i": i} for i in range(1000)])
                                          for _ in range(20)],
        "claim 16": claim_all,
        "ack 16": ack_all,
    }
    for name, run in phases.items():
        r.config_resetstat()
        run()
        us, calls = usec_per_evalsha(r)
        print(f"{name}: {us:.2f} us per call ({calls} calls)")
    r.flushdb()


if __name__ == "__main__":
    main()
