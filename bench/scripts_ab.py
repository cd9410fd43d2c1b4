"""The Lua scripts alone, A/B between two checkouts, interleaved on one redis-server.

    python -m bench.scripts_ab <path/to/old/worker> <path/to/new/worker> [rounds] [tasks]

Each round runs, for the old tree and then the new one, in a fresh process:
``enqueue_many`` of ``tasks`` (default 2,048) in batches of 1,000, claims of 16
until input is empty, acks of 16; and reads how long Redis spent in EVALSHA
(``INFO commandstats``, the script calls with every command inside them) per
task for each phase. Prints the medians and the median of the paired new/old
ratios with their quartiles, which a loaded machine moves less than the times.
"""

from __future__ import annotations

import inspect
import json
import os
import statistics
import subprocess
import sys

from bench.redisserver import RedisServer

PHASES = ("enqueue", "claim", "ack")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one_round(url: str, n: int) -> dict[str, float]:
    """Run in the child: the three phases against ``url``; µs of EVALSHA per task each."""
    import redis
    from kubetaskqueue.store import NewTask, RedisStore, connect

    r = redis.Redis.from_url(url)
    r.flushall()
    store = RedisStore(connect(url))

    def usec() -> float:
        return float(r.info("commandstats").get("cmdstat_evalsha", {}).get("usec", 0))

    marks = [usec()]
    for start in range(0, n, 1000):
        store.enqueue("ab", [NewTask(f"t{i}", '{"i": 1}', 0, None, 0.0)
                             for i in range(start, min(n, start + 1000))])
    marks.append(usec())
    rows = []
    while batch := store.claim("ab", 16, 30.0, "ab-00000000")[1]:
        rows += batch
    marks.append(usec())
    takes_run_s = "run_s" in inspect.signature(store.ack_many).parameters
    for i in range(0, len(rows), 16):
        leases = [(row.id, row.token) for row in rows[i:i + 16]]
        if takes_run_s:
            store.ack_many("ab", leases, run_s=0.001 * len(leases))
        else:
            store.ack_many("ab", leases)
    marks.append(usec())
    return {phase: (marks[i + 1] - marks[i]) / n for i, phase in enumerate(PHASES)}


def run_tree(tree: str, url: str, n: int) -> dict[str, float]:
    code = ("import json; from bench.scripts_ab import one_round; "
            f"print(json.dumps(one_round({url!r}, {n})))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([tree, REPO]))
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    old, new = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 30
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 2048
    redis = RedisServer()
    runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    try:
        for _ in range(rounds):
            runs["old"].append(run_tree(old, redis.url, n))
            runs["new"].append(run_tree(new, redis.url, n))
    finally:
        redis.stop()
    for phase in PHASES:
        ratios = [b[phase] / a[phase] for a, b in zip(runs["old"], runs["new"], strict=True)]
        low, _, high = statistics.quantiles(ratios, n=4)
        print(f"{phase}: old {statistics.median(r[phase] for r in runs['old']):.1f} µs/task, "
              f"new {statistics.median(r[phase] for r in runs['new']):.1f}; new/old median "
              f"{statistics.median(ratios):.3f} (quartiles {low:.3f} / {high:.3f})")


if __name__ == "__main__":
    main()
