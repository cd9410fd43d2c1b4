"""The user's path on a real cluster whose pods run: the chart, the image, the operator.

    KUBETASKQUEUE_E2E_KUBECONFIG=/path/to/kubeconfig \
    KUBETASKQUEUE_E2E_IMAGE=localhost/kubetaskqueue:e2e \
    KUBETASKQUEUE_HELM=$(command -v helm) pytest tests/e2e/test_chart_e2e.py -v -s

The image must be on the nodes already (or pullable); the test machine must reach
pod and ClusterIP addresses (it talks to the bundled Redis and to the exporter
directly) and have `prometheus`. The steps run in order, each on what the one
before left: install and `helm test`; a backlog scales the workers up, every new
pod claims work, every task id completes once; scale-in keeps the busy pods; a
dying topic fires KubeTaskQueueDeadQueueGrowing in a real Prometheus; a busy pod
deleted with --grace-period=0 has its tasks running again well inside the lease
TTL (the operator releases them); an operator rollout hands over the leader
Lease at once; `helm uninstall` leaves no WorkerPool and no Lease. Timings and
counts are printed at the end (and written to $KUBETASKQUEUE_E2E_RESULTS).
"""

from __future__ import annotations

import base64
import collections
import datetime as dt
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_env import ENV_IMAGE, ENV_KUBECONFIG, ENV_REDIS_IMAGE, ENV_RESULTS, skip_reason

if skip_reason(ENV_IMAGE):
    pytest.skip(skip_reason(ENV_IMAGE) or "", allow_module_level=True)

from helpers import wait_until
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubetaskqueue import Manager
from kubetaskqueue.events import Event, read_stream
from kubetaskqueue.keys import TopicKeys
from kubetaskqueue.queue_state import read_lease_owners
from kubetaskqueue_operator.recovery import pod_of
from prometheus_proc import Prometheus

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kubetaskqueue"
RELEASE = "ktq"
PREFIX = "kubetaskqueue"  # the chart's keyPrefix default
TOPIC = "example"  # the chart's example app serves it
DYING = "e2e-dying"
POLL_S = 2
WINDOW_S = 20
LEASE_TTL_S = 30
MIN_REPLICAS = 2  # an idle pod is there to take over a lost pod's tasks at once
MAX_REPLICAS = 8
SLOTS = 5
BACKLOG = 200
TASK_S = 2.0
GROUP, VERSION, PLURAL = "kubetaskqueue.io", "v1alpha1", "workerpools"

RESULTS: dict[str, Any] = {}


def _helm() -> str:
    helm = os.environ.get("KUBETASKQUEUE_HELM") or shutil.which("helm")
    if not helm:
        pytest.skip("no helm binary (set KUBETASKQUEUE_HELM)")
    return helm


def _prometheus_bin() -> str:
    binary = shutil.which("prometheus")
    if not binary:
        pytest.skip("prometheus not found (apt-get install prometheus)")
    return binary


def _record(key: str, value: Any) -> None:
    RESULTS[key] = round(value, 2) if isinstance(value, float) else value
    print(f"e2e: {key} = {RESULTS[key]}")


class Kube:
    """The few reads and writes the scenario needs, on the official client."""

    def __init__(self, kubeconfig: str, namespace: str) -> None:
        api = config.new_client_from_config(config_file=kubeconfig)
        self.core: Any = client.CoreV1Api(api)
        self.apps: Any = client.AppsV1Api(api)
        self.custom: Any = client.CustomObjectsApi(api)
        self.coordination: Any = client.CoordinationV1Api(api)
        self.ns = namespace

    def selector(self, component: str) -> str:
        return f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={component}"

    def pods(self, component: str) -> list[Any]:
        return list(self.core.list_namespaced_pod(self.ns,
                                                  label_selector=self.selector(component)).items)

    def live_pods(self, component: str) -> list[Any]:
        return [p for p in self.pods(component) if p.metadata.deletion_timestamp is None]

    def ready_pods(self, component: str) -> list[Any]:
        return [p for p in self.live_pods(component)
                if any(c.type == "Ready" and c.status == "True"
                       for c in (p.status.conditions or []))]

    def deployment(self, component: str) -> Any:
        found = self.apps.list_namespaced_deployment(
            self.ns, label_selector=self.selector(component)).items
        assert len(found) == 1, f"expected one {component} Deployment, found {len(found)}"
        return found[0]

    def replicas(self, component: str) -> int:
        return int(self.deployment(component).spec.replicas or 0)

    def service_ip(self, component: str) -> str:
        found = self.core.list_namespaced_service(
            self.ns, label_selector=self.selector(component)).items
        return str(found[0].spec.cluster_ip)

    def secret_value(self, name: str, key: str) -> str:
        secret = self.core.read_namespaced_secret(name, self.ns)
        return base64.b64decode(secret.data[key]).decode()

    def pools(self) -> list[dict[str, Any]]:
        listed = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL)
        return list(listed["items"])

    def lease_holder(self, name: str) -> str | None:
        try:
            lease = self.coordination.read_namespaced_lease(name, self.ns)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return lease.spec.holder_identity or ""


@pytest.fixture(scope="module")
def kube() -> Iterator[Kube]:
    ns = f"ktq-e2e-{uuid.uuid4().hex[:6]}"
    k = Kube(os.environ[ENV_KUBECONFIG], ns)
    k.core.create_namespace({"metadata": {"name": ns}})
    yield k
    try:
        k.core.delete_namespace(ns)
    except ApiException as exc:
        if exc.status != 404:
            raise
    if os.environ.get(ENV_RESULTS):
        Path(os.environ[ENV_RESULTS]).write_text(json.dumps(RESULTS, indent=2) + "\n")
    print("e2e results:", json.dumps(RESULTS, indent=2))


def _node_peers(kube: Kube) -> list[dict[str, Any]]:
    """ipBlock peers for the nodes' addresses. This test talks to the Redis pod from the
    machine it runs on (a node), which the Redis NetworkPolicy's pod selectors do not
    cover; where the network plugin enforces policies, these let it in."""
    return [{"ipBlock": {"cidr": f"{a.address}/{128 if ':' in a.address else 32}"}}
            for node in kube.core.list_node().items for a in node.status.addresses or []
            if a.type == "InternalIP"]


def _values(kube: Kube) -> dict[str, Any]:
    repository, _, tag = os.environ[ENV_IMAGE].rpartition(":")
    values: dict[str, Any] = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
        "worker": {"numWorkers": SLOTS, "leaseTtlSeconds": LEASE_TTL_S,
                   "shutdownGraceSeconds": 10},
        "workerPool": {"minReplicas": MIN_REPLICAS, "maxReplicas": MAX_REPLICAS,
                       "targetTasksPerReplica": SLOTS, "pollSeconds": POLL_S,
                       "scaleDown": {"stabilizationSeconds": WINDOW_S}},
        "redis": {"persistence": {"enabled": False}},
        "networkPolicy": {"redisFrom": _node_peers(kube)},
    }
    if os.environ.get(ENV_REDIS_IMAGE):
        repo, _, rtag = os.environ[ENV_REDIS_IMAGE].rpartition(":")
        values["redis"]["image"] = {"repository": repo, "tag": rtag}
    return values


def _run(*args: str, timeout_s: float) -> float:
    """Run a command to completion; return how long it took (fails on a non-zero exit)."""
    env = {**os.environ, "KUBECONFIG": os.environ[ENV_KUBECONFIG]}
    start = time.monotonic()
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout_s)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return time.monotonic() - start


@pytest.fixture(scope="module")
def release(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Manager]:
    """`helm install` until every pod is Ready; yields a producer on the bundled Redis."""
    values = tmp_path_factory.mktemp("values") / "values.json"
    values.write_text(json.dumps(_values(kube)))
    helm = _helm()
    took = _run(helm, "install", RELEASE, str(CHART), "-n", kube.ns, "-f", str(values),
                "--wait", "--timeout", "5m", timeout_s=330)
    _record("install_to_ready_s", took)
    password = kube.secret_value(f"{RELEASE}-kubetaskqueue-redis", "redis-password")
    # The bundled Redis' Service is headless (a StatefulSet's): talk to its pod.
    url = f"redis://:{password}@{kube.ready_pods('redis')[0].status.pod_ip}:6379/0"
    producer = Manager(url, namespace=PREFIX)
    try:
        yield producer
    finally:
        if kube.pools():  # the uninstall step did not run: leave no finalizer behind
            done = subprocess.run([helm, "uninstall", RELEASE, "-n", kube.ns, "--wait",
                                   "--timeout", "2m"],
                                  env={**os.environ, "KUBECONFIG": os.environ[ENV_KUBECONFIG]},
                                  capture_output=True, text=True, timeout=150)
            print("e2e: clean-up uninstall:", done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def prometheus(kube: Kube, release: Manager,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """A real Prometheus on this machine scraping the chart's exporter with the shipped rules."""
    target = f"{kube.service_ip('exporter')}:9100"
    prom = Prometheus(_prometheus_bin(), tmp_path_factory.mktemp("prometheus"), [target])
    try:
        wait_until(lambda: prom.query("up == 1"), 60, 0.5, what="Prometheus scraping the exporter")
        yield prom
    finally:
        prom.stop()


def _events(producer: Manager, topic: str) -> list[Event]:
    return read_stream(producer.store.client, TopicKeys(PREFIX, topic).events, topic)


def _busy_by_pod(producer: Manager) -> dict[str, int]:
    busy: dict[str, int] = collections.Counter()
    for manager_id, count in read_lease_owners(producer.store.client, PREFIX, [TOPIC]).items():
        busy[pod_of(manager_id)] += count
    return dict(busy)


def test_helm_test_passes(kube: Kube, release: Manager, prometheus: Prometheus) -> None:
    assert kube.ready_pods("worker")
    _record("helm_test_s", _run(_helm(), "test", RELEASE, "-n", kube.ns, "--timeout", "2m",
                                timeout_s=150))


def test_backlog_scales_up_new_pods_claim_and_every_task_completes_once(
        kube: Kube, release: Manager) -> None:
    payloads = [{"sleep_s": TASK_S, "n": n} for n in range(BACKLOG)]
    start = time.monotonic()
    ids = release.enqueue_many(TOPIC, payloads)
    wait_until(lambda: kube.replicas("worker") == MAX_REPLICAS, 4 * POLL_S + 10, 0.2,
               what=f"scale-up to {MAX_REPLICAS}")
    _record("enqueue_to_scale_up_s", time.monotonic() - start)
    ready = wait_until(lambda: len(r := kube.ready_pods("worker")) == MAX_REPLICAS and r, 120,
                       0.5, what=f"{MAX_REPLICAS} Ready worker pods")
    _record("enqueue_to_all_pods_ready_s", time.monotonic() - start)

    def drained() -> bool:
        topic = release.stats()["topics"][TOPIC]
        return topic["input"] == 0 and topic["work"] == 0 and topic["scheduled"] == 0

    wait_until(drained, BACKLOG * TASK_S / SLOTS + 120, 0.5, what="the backlog to drain")
    _record("drain_s", time.monotonic() - start)

    events = _events(release, TOPIC)
    ours = set(ids)
    completions = collections.Counter(e.task_id for e in events
                                      if e.type == "TASK_COMPLETION" and e.task_id in ours)
    assert set(completions) == ours, f"{len(ours - set(completions))} task(s) never completed"
    assert max(completions.values()) == 1, "a task completed twice"
    ran = collections.Counter(pod_of(e.detail) for e in events
                              if e.type == "TASK_START" and e.task_id in ours)
    idle = {p.metadata.name for p in ready} - set(ran)
    assert not idle, f"pods Ready during the backlog that never claimed a task: {sorted(idle)}"
    _record("tasks_per_pod", sorted(ran.values()))
    topic = release.stats()["topics"][TOPIC]
    assert topic["enqueued"] == topic["completed"] + topic["dead"] + topic["input"] \
        + topic["work"] + topic["scheduled"], topic
    _record("tasks_completed", len(completions))


def test_scale_in_keeps_the_busy_pods(kube: Kube, release: Manager) -> None:
    # Long tasks outlast the stabilization window, so scale-in happens while they run;
    # more than two pods' slots of them, so at least three pods are busy.
    count = 2 * SLOTS + 1
    long_ids = release.enqueue_many(TOPIC, [{"sleep_s": WINDOW_S + 25}] * count)
    busy = wait_until(lambda: (b := _busy_by_pod(release)) and sum(b.values()) == count and b,
                      30, 0.2, what="the long tasks to start")
    assert len(busy) >= 3
    start = time.monotonic()
    floor = max(MIN_REPLICAS, len(busy))
    wait_until(lambda: kube.replicas("worker") <= floor, WINDOW_S + 6 * POLL_S + 20, 0.5,
               what="scale-in after the window")
    _record("scale_in_after_s", time.monotonic() - start)
    wait_until(lambda: len(kube.pods("worker")) == kube.replicas("worker"), 60, 0.5,
               what="the removed pods to be gone")
    left = {p.metadata.name for p in kube.live_pods("worker")}
    assert set(busy) <= left, f"a busy pod was removed: busy {sorted(busy)}, left {sorted(left)}"
    wait_until(lambda: release.stats()["topics"][TOPIC]["work"] == 0, WINDOW_S + 60, 0.5,
               what="the long tasks to finish")
    events = [e for e in _events(release, TOPIC) if e.task_id in set(long_ids)]
    assert not [e for e in events if e.type in ("TASK_RELEASED", "TASK_WORKER_LOST",
                                                   "TASK_LEASE_EXPIRED")], events
    assert sum(e.type == "TASK_COMPLETION" for e in events) == count
    _record("busy_pods_kept", len(busy))


def test_a_dying_topic_fires_the_dead_queue_alert(
        kube: Kube, release: Manager, prometheus: Prometheus) -> None:
    release.enqueue(TOPIC, {"fail": "e2e: this task always fails"}, num_retries=0)
    died = wait_until(lambda: [e for e in _events(release, TOPIC) if e.type == "TASK_DEAD"],
                      60, 0.2, what="the failing task to die")
    died_at = time.monotonic()
    alert = wait_until(lambda: prometheus.firing("KubeTaskQueueDeadQueueGrowing"), 90, 0.5,
                       what="KubeTaskQueueDeadQueueGrowing to fire")
    _record("death_to_alert_s", time.monotonic() - died_at)
    assert alert[0]["labels"]["topic"] == TOPIC
    assert "e2e: this task always fails" in died[0].detail


def test_a_force_deleted_busy_pod_has_its_tasks_run_again_within_one_poll(
        kube: Kube, release: Manager) -> None:
    client = release.store.client
    ids = release.enqueue_many(TOPIC, [{"sleep_s": 20}] * 4, num_retries=0)
    busy = wait_until(lambda: (b := _busy_by_pod(release)) and sum(b.values()) == 4 and b,
                      60, 0.2, what="the tasks to start")
    victim = max(busy, key=lambda pod: busy[pod])
    held = [i for i in ids if pod_of(client.hget(TopicKeys(PREFIX, TOPIC).task(i), "owner")
                                      or "") == victim]
    assert held
    kube.core.delete_namespaced_pod(victim, kube.ns, grace_period_seconds=0)
    killed = time.monotonic()

    def started_elsewhere() -> bool:
        starts = [e for e in _events(release, TOPIC) if e.type == "TASK_START"
                  and e.task_id in held and pod_of(e.detail) != victim]
        return len({e.task_id for e in starts}) == len(held)

    wait_until(lambda: [e for e in _events(release, TOPIC) if e.type == "TASK_WORKER_LOST"
                        and e.task_id in held], LEASE_TTL_S + 30, 0.1,
               what="the operator to release the lost leases")
    _record("force_delete_to_release_s", time.monotonic() - killed)
    wait_until(started_elsewhere, LEASE_TTL_S + 30, 0.1, what="the lost tasks to run again")
    recovery_s = time.monotonic() - killed
    _record("force_delete_to_rerun_s", recovery_s)
    _record("lease_ttl_s", LEASE_TTL_S)
    assert recovery_s < LEASE_TTL_S / 2, "the tasks waited for their leases to expire"
    for task_id in held:
        fields = client.hgetall(TopicKeys(PREFIX, TOPIC).task(task_id))
        assert victim in fields["last_error"], fields["last_error"]
        assert fields["losses"] == "1"
    wait_until(lambda: all(release.stats()["topics"][TOPIC][s] == 0 for s in ("work", "input")),
               60, 0.5, what="the re-run tasks to finish")
    done = collections.Counter(e.task_id for e in _events(release, TOPIC)
                               if e.type == "TASK_COMPLETION" and e.task_id in set(ids))
    assert set(done) == set(ids), "a task of the deleted pod did not finish"


def test_operator_rollout_hands_over_the_lease(kube: Kube, release: Manager) -> None:
    old = kube.live_pods("operator")
    assert len(old) == 1
    lease = kube.deployment("operator").metadata.name  # the chart names the Lease after it
    old_holder = kube.lease_holder(lease)
    assert old_holder and old_holder.startswith(old[0].metadata.name)
    deployment = kube.deployment("operator")
    stamp = dt.datetime.now(dt.UTC).isoformat()
    kube.apps.patch_namespaced_deployment(deployment.metadata.name, kube.ns, {
        "spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": stamp}}}}})
    start = time.monotonic()
    wait_until(lambda: not [p for p in kube.pods("operator")
                            if p.metadata.name == old[0].metadata.name],
               60, 0.2, what="the old operator pod to exit")
    _record("operator_rollout_old_pod_gone_s", time.monotonic() - start)
    new_holder = wait_until(lambda: (h := kube.lease_holder(lease)) and h != old_holder and h,
                            60, 0.2, what="a new operator to take the Lease")
    _record("operator_rollout_new_leader_s", time.monotonic() - start)
    assert not new_holder.startswith(old[0].metadata.name)
    # Gone well before the 30 s grace period: it exited on SIGTERM, no SIGKILL.
    assert RESULTS["operator_rollout_old_pod_gone_s"] < 15
    # The new leader reconciles: a backlog scales the workers up again. The tasks outlast
    # three polls: with 1 s tasks the backlog was over the 2 replicas' slots for about a
    # second, and a first round just before the enqueue and the next one after the drain
    # both saw too little (1 failure in 6 runs on a real cluster).
    release.enqueue_many(TOPIC, [{"sleep_s": 3 * POLL_S}] * (3 * SLOTS))
    wait_until(lambda: kube.replicas("worker") >= 3, 4 * POLL_S + 10, 0.2,
               what="the new operator to scale up")


def test_uninstall_leaves_no_pool_and_no_lease(kube: Kube, release: Manager) -> None:
    took = _run(_helm(), "uninstall", RELEASE, "-n", kube.ns, "--wait", "--timeout", "2m",
                timeout_s=150)
    _record("uninstall_s", took)
    assert kube.pools() == []
    assert kube.lease_holder(f"{RELEASE}-kubetaskqueue-operator") is None
