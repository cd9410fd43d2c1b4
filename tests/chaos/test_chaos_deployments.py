"""Scenario 8, Redis deployments users run: ACL user, TLS, an evicting maxmemory-policy,
and Sentinel without sentinels (Redis Cluster: test_chaos_cluster.py; Sentinel failover:
test_chaos_sentinel.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
from helpers import free_port
from kubetaskqueue import Manager
from kubetaskqueue.errors import ConfigError, RedisUnavailableError
from ledger import Ledger
from probe import topic_state, wait_until
from redis_proc import RedisFleet
from sentinel_proc import SentinelProc
from tls_certs import make_certs
from workers import WorkerPool

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(120)]

TASKS = 50
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


def test_tls_sentinel(fleet: RedisFleet, ledger: Ledger, pool: WorkerPool, tmp_path: Path,
                      figures: dict[str, Any]) -> None:
    """rediss+sentinel://: TLS to a TLS-only sentinel and a TLS-only Redis."""
    certs = make_certs(tmp_path / "certs")
    tls_args = ("--tls-cert-file", str(certs["server"]), "--tls-key-file",
                str(certs["server-key"]), "--tls-ca-cert-file", str(certs["ca"]),
                "--tls-auth-clients", "no")
    server = fleet.start("tls-data", *tls_args, tls=True)
    check = redis.Redis(port=server.port, ssl=True, ssl_ca_certs=str(certs["ca"]),
                        decode_responses=True)
    server.wait_ready(check)
    sentinel = SentinelProc(fleet.root / "tls-sentinel", 0, tls=True)
    fleet.servers.append(sentinel)  # killed with the rest at teardown
    sentinel.conf.write_text(
        f"port 0\ntls-port {sentinel.port}\nbind 127.0.0.1\ndir {sentinel.workdir}\n"
        + "".join(f"{k.lstrip('-')} {v}\n" for k, v in zip(tls_args[::2], tls_args[1::2],
                                                           strict=True))
        + f"tls-replication yes\nsentinel monitor jobs 127.0.0.1 {server.port} 1\n")
    sentinel.start()
    probe = redis.Redis(port=sentinel.port, ssl=True, ssl_ca_certs=str(certs["ca"]))

    def knows_master() -> bool:
        try:
            return probe.sentinel_get_master_addr_by_name("jobs") is not None
        except redis.ConnectionError:
            return False

    wait_until(knows_master, 30, what="TLS sentinel knows the master")
    url = f"rediss+sentinel://127.0.0.1:{sentinel.port}/jobs/0?ssl_ca_certs={certs['ca']}"
    figures.update(tasks=run_tasks(url, ledger, pool, check),
                   url_form="rediss+sentinel://…/jobs/0?ssl_ca_certs=")
    print(figures)
    with pytest.raises(ConfigError, match="unknown option"):  # a typo is refused, not ignored
        Manager(url.replace("ssl_ca_certs", "ssl_ca_cert")).enqueue("work", {})
    with pytest.raises(redis.ConnectionError):  # and the sentinel is really TLS-only
        redis.Redis(port=sentinel.port, socket_timeout=2).ping()


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
