"""The operator stops on SIGTERM at once, releases the leader Lease, and a standby takes over.

The bug this guards against: with a WorkerPool daemon running, SIGTERM made kopf stop,
then the process hung until SIGKILL and kept renewing the Lease meanwhile. kopf waited
for main()'s threading.Event stop flag in an executor thread that only returned once the
flag was set, ``asyncio.run`` joined that thread, and main() could set the flag only after
kopf returned. The unit tests below pin the mechanisms that replace it (no stop flag,
Lease loss cancels kopf, rounds in daemon threads); the cluster tests run the real
``kubetaskqueue-operator`` against a live API server when KUBETASKQUEUE_E2E_KUBECONFIG
names one (the variable tests/e2e/e2e_env.py reads), and skip otherwise.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
from helpers import free_port, wait_until
from kubetaskqueue_operator import __main__ as cli
from kubetaskqueue_operator import handlers, kube, leader
from kubetaskqueue_operator.leader import LeaderElector, LeaseRecord, MemoryLeaseApi
from opfakes import NS, World

ENV_KUBECONFIG = "KUBETASKQUEUE_E2E_KUBECONFIG"  # as in tests/e2e/e2e_env.py
CRD = Path(__file__).resolve().parents[2] / "manifests" / "crd-workerpool.yaml"
LEASE = "kubetaskqueue-operator"
EXIT_BUDGET_S = 10.0  # SIGTERM to exit; the pod's grace period is 30 s


# --- unit level: the mechanisms, no cluster ------------------------------------------------


def test_in_daemon_thread_returns_raises_and_leaves_a_hung_call_behind() -> None:
    release = threading.Event()

    async def scenario() -> None:
        assert await handlers.in_daemon_thread(lambda: 42, "t") == 42
        with pytest.raises(ZeroDivisionError):
            await handlers.in_daemon_thread(lambda: 1 // 0, "t")
        hung = asyncio.ensure_future(handlers.in_daemon_thread(release.wait, "hung-call"))
        await asyncio.sleep(0)  # let it start
        [thread] = wait_until(
            lambda: [t for t in threading.enumerate() if t.name == "hung-call"], what="the thread"
        )
        assert thread.daemon  # never joined at exit, unlike executor threads
        hung.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(hung, timeout=1)

    try:
        asyncio.run(scenario())  # returns although the call is still blocked
    finally:
        release.set()


def test_a_round_hung_in_redis_does_not_hold_up_cancelling_the_daemon(world: World) -> None:
    entered, release = threading.Event(), threading.Event()

    def hung_reader(*_: Any) -> Any:
        entered.set()
        release.wait()  # a Redis call that never answers
        raise AssertionError("released only at the end of the test")

    memo = kopf.Memo(deps=dataclasses.replace(world.deps, read_queue=hung_reader))

    class NeverStopped:
        def __bool__(self) -> bool:
            return False

    async def scenario() -> float:
        daemon = asyncio.ensure_future(
            handlers.autoscale(stopped=NeverStopped(), body=world.body, memo=memo)
        )
        await asyncio.to_thread(entered.wait, 10)
        assert entered.is_set()
        started = time.monotonic()
        daemon.cancel()  # what kopf does after ROUND_GRACE_S
        with pytest.raises(asyncio.CancelledError):
            await daemon
        return time.monotonic() - started

    try:
        assert asyncio.run(scenario()) < 1.0
    finally:
        release.set()


@pytest.fixture
def fake_operator(monkeypatch: pytest.MonkeyPatch, world: World) -> Iterator[MemoryLeaseApi]:
    """main() without a cluster: an in-memory Lease, fake deps, and kopf's logging left alone."""
    lease = MemoryLeaseApi()
    monkeypatch.setattr(kube, "load_kube_config", lambda: None)
    monkeypatch.setattr(leader, "ClientLeaseApi", lambda namespace, name: lease)
    monkeypatch.setattr(handlers, "default_deps", lambda: world.deps)
    monkeypatch.setattr(kopf, "configure", lambda **_: None)
    monkeypatch.setenv("POD_NAME", "op-a")
    previous = signal.getsignal(signal.SIGTERM)
    yield lease
    signal.signal(signal.SIGTERM, previous)  # main() sets one while it campaigns


def test_main_runs_kopf_without_a_stop_flag_and_releases_the_lease(
    fake_operator: MemoryLeaseApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    async def operator(**kwargs: Any) -> None:  # kopf.operator, returning as on SIGTERM
        seen.update(kwargs)
        assert fake_operator.record is not None
        seen["holder"] = fake_operator.record.holder

    monkeypatch.setattr(kopf, "operator", operator)
    assert cli.main(["--namespace", NS]) == cli.EXIT_OK
    # A threading.Event stop flag is what kept asyncio.run from returning.
    assert "stop_flag" not in seen
    assert (seen["namespaces"], seen["standalone"]) == ([NS], True)
    assert str(seen["holder"]).startswith("op-a_")  # kopf ran while we led
    assert fake_operator.record is not None
    assert (fake_operator.record.holder, fake_operator.record.renewed_at) == (None, None)
    assert not [t for t in threading.enumerate() if t.name == "lease"]  # joined


def test_losing_the_lease_cancels_kopf_and_exits_1(
    fake_operator: MemoryLeaseApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    cancelled = threading.Event()

    async def operator(**_: Any) -> None:  # kopf.operator, running until cancelled
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def fast_elector(api: Any, identity: str) -> LeaderElector:
        return LeaderElector(api, identity, renew_deadline_s=0.2, retry_s=0.02)

    def lose_renewals(record: LeaseRecord) -> None:
        raise ConnectionError("API server unreachable")

    monkeypatch.setattr(kopf, "operator", operator)
    monkeypatch.setattr(leader, "LeaderElector", fast_elector)
    acquire = fake_operator.create

    def create_then_fail(record: LeaseRecord) -> None:
        acquire(record)
        monkeypatch.setattr(fake_operator, "replace", lose_renewals)

    monkeypatch.setattr(fake_operator, "create", create_then_fail)
    assert cli.main(["--namespace", NS]) == cli.EXIT_RUNTIME
    assert cancelled.is_set()
    assert fake_operator.record is not None
    assert str(fake_operator.record.holder).startswith("op-a_")  # not released: we lost it


def test_a_standby_exits_0_on_sigterm_while_waiting_for_the_lease(
    fake_operator: MemoryLeaseApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_operator.create(LeaseRecord("other", time.time() + 3600, 15, 0))  # held, fresh
    campaigning = threading.Event()
    read = fake_operator.read

    def read_and_signal() -> LeaseRecord | None:
        campaigning.set()
        return read()

    monkeypatch.setattr(fake_operator, "read", read_and_signal)
    monkeypatch.setattr(kopf, "operator", lambda **_: pytest.fail("a standby never runs kopf"))

    def sigterm_once_campaigning() -> None:
        campaigning.wait(10)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=sigterm_once_campaigning, daemon=True).start()
    assert cli.main(["--namespace", NS]) == cli.EXIT_OK


# --- cluster level: the real operator against a live API server ----------------------------


def _cluster() -> Any:
    path = os.environ.get(ENV_KUBECONFIG)
    if not path:
        pytest.skip(f"{ENV_KUBECONFIG} is not set: the shutdown tests need a live API server")
    from lightkube import Client, KubeConfig
    from lightkube.resources.core_v1 import Namespace

    client = Client(KubeConfig.from_file(path))
    try:
        list(client.list(Namespace, chunk_size=1))
    except Exception as exc:  # configured but not answering: that is a failure, not a skip
        pytest.fail(f"{ENV_KUBECONFIG}={path}: the API server does not answer: {exc}")
    return client


@pytest.fixture(scope="module")
def cluster() -> Any:
    from lightkube import codecs
    from lightkube.resources.apiextensions_v1 import CustomResourceDefinition

    client = _cluster()
    for crd in codecs.load_all_yaml(CRD.read_text()):
        client.apply(crd, field_manager="kubetaskqueue-tests", force=True)

        def established(name: str = crd.metadata.name) -> bool:
            status = client.get(CustomResourceDefinition, name).status
            conditions = (status.conditions if status else None) or []
            return any(c.type == "Established" and c.status == "True" for c in conditions)

        wait_until(established, 30, 0.2, what="the WorkerPool CRD to be established")
    return client


def _worker_pool() -> Any:
    from lightkube.generic_resource import create_namespaced_resource

    return create_namespaced_resource("kubetaskqueue.io", "v1alpha1", "WorkerPool", "workerpools")


@pytest.fixture
def pool_namespace(cluster: Any) -> Iterator[str]:
    """A namespace with a worker Deployment; the test adds the Secret and the WorkerPool."""
    from lightkube import codecs

    ns = f"ktq-shutdown-{uuid.uuid4().hex[:8]}"
    labels = {"app": "workers"}
    for obj in (
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "workers", "namespace": ns},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "w", "image": "registry.k8s.io/pause:3.9"}]},
                },
            },
        },
    ):
        cluster.create(codecs.from_dict(obj))
    yield ns
    _delete_namespace(cluster, ns)


def _delete_namespace(cluster: Any, ns: str) -> None:
    from lightkube.resources.core_v1 import Namespace
    from lightkube.types import PatchType

    pool, unfinalize = _worker_pool(), {"metadata": {"finalizers": None}}
    for item in cluster.list(pool, namespace=ns):  # no operator left to drop its finalizer
        name = item.metadata.name
        cluster.patch(pool, name, unfinalize, namespace=ns, patch_type=PatchType.MERGE)
    cluster.delete(Namespace, ns)


def _add_pool(cluster: Any, ns: str, redis_url: str) -> None:
    from lightkube import codecs

    cluster.create(
        codecs.from_dict({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "redis", "namespace": ns},
            "stringData": {"url": redis_url},
        })
    )
    _worker_pool()  # registers the kind with lightkube, for codecs.from_dict
    cluster.create(
        codecs.from_dict({
            "apiVersion": "kubetaskqueue.io/v1alpha1",
            "kind": "WorkerPool",
            "metadata": {"name": "pool", "namespace": ns},
            "spec": {
                "scaleTargetRef": {"name": "workers"},
                "redis": {"urlSecretRef": {"name": "redis"}, "keyPrefix": ns},
                "minReplicas": 1,
                "pollSeconds": 1,
            },
        })
    )


class Operator:
    """``kubetaskqueue-operator`` as a subprocess, its JSON log in a file."""

    def __init__(self, ns: str, name: str, tmp_path: Path) -> None:
        self.name, self.log_path = name, tmp_path / f"{name}.log"
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kubetaskqueue_operator", "--namespace", ns,
                 "--lease-namespace", ns, "--health-port", str(free_port())],
                env={**os.environ, "KUBECONFIG": os.environ[ENV_KUBECONFIG], "POD_NAME": name},
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    def messages(self) -> list[str]:
        lines = self.log_path.read_text().splitlines()
        return [json.loads(line)["message"] for line in lines if line.startswith("{")]

    def logged(self, text: str) -> bool:
        return any(text in m for m in self.messages())

    def sigterm(self) -> tuple[int, float]:
        """Send SIGTERM; the exit code and the seconds until the process was gone."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)  # as long as the kubelet would wait
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            code = -9
        return code, time.monotonic() - started

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def operators(tmp_path: Path) -> Iterator[list[Operator]]:
    started: list[Operator] = []
    yield started
    for op in started:
        op.stop()
        print(f"--- {op.name} ---\n" + "\n".join(op.messages()[-40:]))


def _holder(cluster: Any, ns: str) -> str | None:
    record = leader.ClientLeaseApi(ns, LEASE, cluster).read()
    return record.holder if record is not None else None


def _round_done(cluster: Any, ns: str) -> bool:
    status = cluster.get(_worker_pool(), "pool", namespace=ns).get("status") or {}
    return any(
        c["type"] == "RedisReachable" and c["status"] == "True"
        for c in status.get("conditions", [])
    )


def test_sigterm_with_a_pool_daemon_running_exits_0_and_hands_over_the_lease(
    cluster: Any, pool_namespace: str, redis_url: str, operators: list[Operator], tmp_path: Path
) -> None:
    ns = pool_namespace
    _add_pool(cluster, ns, redis_url)
    a = Operator(ns, "op-a", tmp_path)
    operators.append(a)
    wait_until(lambda: _round_done(cluster, ns), 60, 0.2, what="op-a's first round")
    assert str(_holder(cluster, ns)).startswith("op-a_")
    b = Operator(ns, "op-b", tmp_path)
    operators.append(b)
    wait_until(lambda: b.logged("waiting for the Lease"), 30, 0.1, what="op-b to campaign")

    code, took = a.sigterm()
    assert (code, took < EXIT_BUDGET_S) == (0, True), f"exit {code} after {took:.1f} s"
    print(f"op-a exited {code} {took:.2f} s after SIGTERM")
    messages = a.messages()
    assert any("Signal SIGTERM is received" in m for m in messages)
    assert not [m for m in messages if "did not exit in time" in m]
    # Released on the way out: op-b takes over within its next attempt (2 s), not after
    # the 15 s the Lease would need to expire.
    gone = time.monotonic()
    wait_until(
        lambda: str(_holder(cluster, ns)).startswith("op-b_"), 3.5, 0.05, what="op-b to lead"
    )
    print(f"op-b leads {time.monotonic() - gone:.2f} s after op-a exited")
    wait_until(lambda: b.logged("leads"), 10, 0.1, what="op-b to say it leads")

    # op-b runs the pool now; it drops the pool's finalizer when the pool is deleted.
    cluster.delete(_worker_pool(), "pool", namespace=ns)
    wait_until(lambda: not list(cluster.list(_worker_pool(), namespace=ns)), 30, 0.2,
               what="op-b to finalize the deleted pool")  # fmt: skip
    code, took = b.sigterm()
    assert (code, took < EXIT_BUDGET_S) == (0, True), f"exit {code} after {took:.1f} s"
    assert _holder(cluster, ns) is None


@pytest.fixture
def silent_redis() -> Iterator[socket.socket]:
    """A TCP port that accepts connections and never answers: a Redis call that hangs."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(60)
        yield server


def test_sigterm_while_a_round_hangs_on_redis_exits_0_within_the_budget(
    cluster: Any,
    pool_namespace: str,
    silent_redis: socket.socket,
    operators: list[Operator],
    tmp_path: Path,
) -> None:
    ns = pool_namespace
    _add_pool(cluster, ns, f"redis://127.0.0.1:{silent_redis.getsockname()[1]}/0")
    a = Operator(ns, "op-a", tmp_path)
    operators.append(a)
    connection, _ = silent_redis.accept()  # the round is now waiting for Redis to answer
    with connection:
        code, took = a.sigterm()
    assert (code, took < EXIT_BUDGET_S) == (0, True), f"exit {code} after {took:.1f} s"
    print(f"op-a exited {code} {took:.2f} s after SIGTERM, its round hung on Redis")
    assert _holder(cluster, ns) is None  # released
