"""The kopf glue: the daemon loop, waiting for Redis, TemporaryError on other failures, and
operator settings."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import kopf
import pytest
from kubetaskqueue_operator import handlers
from kubetaskqueue_operator.queue import QueueSnapshot
from opfakes import NS, World


class Stopper:
    """Stands in for kopf.DaemonStopped: stops after ``rounds`` waits."""

    def __init__(self, rounds: int, on_wait: Callable[[int], None] = lambda n: None) -> None:
        self.rounds, self.waits, self.on_wait = rounds, [], on_wait

    def __bool__(self) -> bool:
        return len(self.waits) >= self.rounds

    async def wait(self, timeout: float) -> Stopper:
        self.waits.append(timeout)
        self.on_wait(len(self.waits))
        return self


def run_daemon(world: World, stopped: Stopper, memo: kopf.Memo | None = None) -> kopf.Memo:
    memo = memo if memo is not None else kopf.Memo(deps=world.deps)
    asyncio.run(handlers.autoscale(stopped=stopped, body=world.body, memo=memo))
    return memo


def test_daemon_runs_a_round_per_poll_until_stopped(world: World) -> None:
    world.queue.snapshot = QueueSnapshot(input=40)
    stopped = Stopper(rounds=3)
    memo = run_daemon(world, stopped)
    assert stopped.waits == [15.0, 15.0, 15.0]
    assert len(world.queue.calls) == 3
    assert world.replicas == 4
    assert memo["pool"].history  # per-object memory kept between rounds


def test_daemon_turns_failures_into_temporary_error(world: World) -> None:
    del world.kube.secrets[(NS, "redis")]
    with pytest.raises(kopf.TemporaryError) as err:
        run_daemon(world, Stopper(5))
    assert err.value.delay == 15.0
    assert "read Secret jobs/redis: 404" in str(err.value)
    assert world.condition("Ready")["reason"] == "RedisSecretUnavailable"


def test_daemon_waits_for_redis_and_says_so_once_per_outage(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis not up yet (helm install) is no daemon failure: one line, then polling on."""
    world.queue.error = "Redis at redis://redis:6379/0: Error -3 connecting to redis:6379."

    def redis_comes_up(waits: int) -> None:
        if waits == 3:
            world.queue.error = None

    stopped = Stopper(rounds=4, on_wait=redis_comes_up)
    with caplog.at_level(logging.INFO, logger=handlers.__name__):
        run_daemon(world, stopped)
    assert len(world.queue.calls) == 4  # no TemporaryError: the same daemon kept polling
    assert stopped.waits == [15.0] * 4
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (
            "WARNING",
            "WorkerPool jobs/pool: waiting for Redis at redis://redis:6379/0: "
            "Error -3 connecting to redis:6379.",
        ),
        ("INFO", "WorkerPool jobs/pool: Redis is reachable again"),
    ]
    assert world.condition("RedisReachable")["status"] == "True"


def test_while_redis_is_down_the_condition_says_why(world: World) -> None:
    world.queue.error = "Redis at redis://redis:6379/0: Connection refused"
    run_daemon(world, Stopper(2))
    redis = world.condition("RedisReachable")
    assert (redis["status"], redis["reason"]) == ("False", "RedisUnreachable")
    assert "Connection refused" in redis["message"]


def test_startup_settings_keep_rbac_namespaced_and_events_quiet(world: World) -> None:
    settings = kopf.OperatorSettings()
    memo = kopf.Memo(deps=world.deps)
    handlers.configure(settings=settings, memo=memo)
    assert settings.scanning.disabled is True
    assert settings.peering.standalone is True
    assert settings.posting.level == logging.WARNING
    assert settings.persistence.finalizer == "kubetaskqueue.io/operator"
    assert memo["deps"] is world.deps  # injected deps are kept


def test_cli_without_a_namespace_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from kubetaskqueue_operator.__main__ import EXIT_USAGE, main

    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    monkeypatch.delenv("KUBETASKQUEUE_OPERATOR_NAMESPACES", raising=False)
    assert main([]) == EXIT_USAGE
    assert capsys.readouterr().err == (
        "kubetaskqueue-operator: no namespace to watch; pass --namespace NS, set "
        "POD_NAMESPACE, or pass --all-namespaces\n"
    )
