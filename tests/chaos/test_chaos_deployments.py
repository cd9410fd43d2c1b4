"""Scenario 8, Redis deployments users run: ACL user, TLS, an evicting maxmemory-policy,
Redis Cluster (redis+cluster://) and Sentinel without sentinels (the failover scenario is
test_chaos_sentinel.py)."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis
from chaos_env import FULL
from helpers import free_cluster_port, free_port
from kubetaskqueue import Manager
from kubetaskqueue.errors import RedisUnavailableError
from ledger import Ledger, duplicates
from probe import topic_state, wait_until
from redis_proc import RedisFleet
from tls_certs import make_certs
from workers import WorkerPool

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]

TASKS = 50
CLUSTER_TASKS = 1_200 if FULL else 300
ACL_RULES = ("on", ">s3cret", "~kubetaskqueue:*", "resetchannels", "+@all", "-@dangerous",
             "-flushall", "-keys")


def run_tasks(url: str, ledger: Ledger, pool: WorkerPool, check: redis.Redis) -> int:
    """Enqueue TASKS through ``url``, run them on a worker using ``url``; count completions."""
    pool.redis_url = url
    ids = Manager(url).enqueue_many("work", [{"ms": 5}] * TASKS)
    worker = pool.start(0)
    wait_until(lambda: int(check.hget("kubetaskqueue:{work}:stats", "completed") or 0) == TASKS,
               30, what="tasks completed")
    assert ledger.finished_ids() == set(ids)
    assert pool.terminate_all() == {worker.pid: 0}
    return TASKS


def test_acl_user(fleet: RedisFleet, ledger: Ledger, pool: WorkerPool,
                  figures: dict[str, Any]) -> None:
    server = fleet.start("acl")
    admin = server.client()
    admin.execute_command("ACL", "SETUSER", "worker", *ACL_RULES)
    url = f"redis://worker:s3cret@127.0.0.1:{server.port}/0"
    done = run_tasks(url, ledger, pool, admin)
    log = pool.workers[0].log()
    # CONFIG is @dangerous: the worker cannot read maxmemory-policy and says so.
    assert "cannot read Redis maxmemory-policy" in log and "s3cret" not in log
    bad = subprocess.run([sys.executable, "-m", "kubetaskqueue", "--redis-url",
                          f"redis://worker:wrong@127.0.0.1:{server.port}/0", "stats"],
                         capture_output=True, text=True, timeout=30)
    figures.update(tasks=done, wrong_password_exit=bad.returncode,
                   wrong_password_stderr=bad.stderr.strip()[:160])
    print(figures)
    assert bad.returncode == 1 and "wrong" not in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_tls(fleet: RedisFleet, ledger: Ledger, pool: WorkerPool, tmp_path: Path,
             figures: dict[str, Any]) -> None:
    certs = make_certs(tmp_path / "certs")
    server = fleet.start("tls", "--tls-cert-file", str(certs["server"]), "--tls-key-file",
                         str(certs["server-key"]), "--tls-ca-cert-file", str(certs["ca"]),
                         "--tls-auth-clients", "no", tls=True)
    check = redis.Redis(port=server.port, ssl=True, ssl_ca_certs=str(certs["ca"]),
                        decode_responses=True)
    server.wait_ready(check)
    url = f"rediss://127.0.0.1:{server.port}/0?ssl_ca_certs={certs['ca']}"
    figures.update(tasks=run_tasks(url, ledger, pool, check), url_form="rediss://…?ssl_ca_certs=")
    print(figures)
    with pytest.raises(redis.ConnectionError):  # and it is really TLS-only
        redis.Redis(port=server.port, socket_timeout=2).ping()


def test_evicting_maxmemory_policy_is_refused(fleet: RedisFleet, pool: WorkerPool) -> None:
    server = fleet.start("lru")
    server.client().config_set("maxmemory-policy", "allkeys-lru")
    pool.redis_url = server.url
    worker = pool.start(0)
    assert worker.proc.wait(timeout=30) == 1
    log = worker.log()
    assert "maxmemory-policy is 'allkeys-lru'" in log and "noeviction" in log
    assert topic_state(server.client(), "work").work == 0


def test_sentinel_without_sentinels_fails_clearly() -> None:
    """redis+sentinel:// is supported (tests/test_processes.py, test_chaos_sentinel.py);
    with no sentinel up it must say Redis is unavailable, not misbehave."""
    with pytest.raises(RedisUnavailableError, match="is it running"):
        Manager(f"redis+sentinel://127.0.0.1:{free_port()}/mymaster/0").enqueue("work", {})


def test_redis_cluster(fleet: RedisFleet, ledger: Ledger, pool: WorkerPool,
                       figures: dict[str, Any]) -> None:
    """Three masters; topics whose slots live on different masters ("raise" on the
    first, "work" on the second, "fuzz" on the third); one worker SIGKILLed mid-run."""
    nodes = [fleet.start(f"node{i}", "--cluster-enabled", "yes", "--cluster-config-file",
                         "nodes.conf", appendonly=False, port=free_cluster_port())
             for i in range(3)]
    subprocess.run(["redis-cli", "--cluster", "create",
                    *[f"127.0.0.1:{n.port}" for n in nodes], "--cluster-yes"],
                   check=True, capture_output=True, timeout=60)
    check = redis.RedisCluster(host="127.0.0.1", port=nodes[0].port, decode_responses=True)
    wait_until(lambda: check.cluster_info().get("cluster_state") == "ok", 30,
               what="cluster ok")
    masters = {t: check.get_node_from_key(f"kubetaskqueue:{{{t}}}:input").port
               for t in ("raise", "work", "fuzz")}
    assert len(set(masters.values())) == 3, masters
    url = "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in nodes)
    producer = Manager(url)
    work = producer.enqueue_many("work", [{"ms": random.randint(10, 100)}
                                          for _ in range(CLUSTER_TASKS)], num_retries=3)
    fuzz = producer.enqueue_many("fuzz", [{"n": i} for i in range(CLUSTER_TASKS // 4)],
                                 num_retries=3)
    poison = producer.enqueue_many("raise", [{}] * 5, num_retries=2)
    pool.redis_url = url
    pool.env.update(KUBETASKQUEUE_LEASE_TTL_S="2", KUBETASKQUEUE_NUM_WORKERS="4")
    victim, survivor = pool.start(0), pool.start(1)
    wait_until(lambda: ledger.count("finishes") >= CLUSTER_TASKS // 3, 60,
               what="a third of the tasks done")
    pool.sigkill(victim)
    pool.start(0)

    def counters(topic: str) -> dict[str, int]:
        return producer.stats()["topics"][topic]

    wait_until(lambda: counters("work")["completed"] == len(work)
               and counters("fuzz")["completed"] == len(fuzz)
               and counters("raise")["dead"] == len(poison), 120, what="every task settled")
    stats = producer.stats()["topics"]
    starts = ledger.start_counts()
    dups = duplicates(Counter({i: n for i, n in starts.items() if i not in poison}))
    figures.update(tasks=len(work) + len(fuzz) + len(poison), masters=3, kills=1,
                   duplicates=dups, fenced=sum(s.get("fenced", 0) for s in stats.values()),
                   topic_master_ports=masters)
    print(figures)
    assert ledger.finished_ids() >= set(work) | set(fuzz)
    assert all(stats[t]["input"] == stats[t]["work"] == stats[t]["scheduled"] == 0
               for t in masters)
    assert {i: starts[i] for i in poison} == {i: 3 for i in poison}  # num_retries + 1
    assert dups <= 4  # at most the victim's slots were in flight when it died
    assert survivor.alive() and pool.terminate_all()[survivor.pid] == 0
