"""The kopf glue: the daemon loop, TemporaryError on failure, and operator settings."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import kopf
import pytest
from kubetaskqueue_operator import handlers
from kubetaskqueue_operator.queue import QueueSnapshot
from opfakes import World


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
    world.queue.error = "Redis at redis://redis:6379: Connection refused"
    with pytest.raises(kopf.TemporaryError) as err:
        run_daemon(world, Stopper(5))
    assert err.value.delay == 15.0
    assert "Connection refused" in str(err.value)
    assert world.condition("RedisReachable")["status"] == "False"


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
