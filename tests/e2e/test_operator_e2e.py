"""The operator against a real cluster and a real Redis (skipped without both).

    KUBETASKQUEUE_E2E_KUBECONFIG=~/.kube/config \
    KUBETASKQUEUE_E2E_REDIS_URL=redis://localhost:6379/0 pytest tests/e2e -v

Applies the CRD, makes a namespace, a Secret, a Deployment (pause image: pods
need not run, a cluster without nodes works) and a WorkerPool, runs the
operator as a subprocess, enqueues tasks with the core library and watches the
Deployment's spec.replicas: up within one poll, held while a task is in work,
busy pod marked with pod-deletion-cost, down after the stabilization window.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_env import ENV_KUBECONFIG, ENV_REDIS_URL, skip_reason

if skip_reason(ENV_REDIS_URL):
    pytest.skip(skip_reason(ENV_REDIS_URL) or "", allow_module_level=True)

from helpers import free_port, wait_until
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubetaskqueue.connection import connect
from kubetaskqueue.producer import NewTasks
from kubetaskqueue.store import RedisStore
from kubetaskqueue_operator.kube import DELETION_COST

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "manifests" / "crd-workerpool.yaml"
POLL_S = 2
WINDOW_S = 20
PER_REPLICA = 5
TOPIC = "e2e"


class Cluster:
    def __init__(self, kubeconfig: str) -> None:
        self.api: Any = config.new_client_from_config(config_file=kubeconfig)
        self.core: Any = client.CoreV1Api(self.api)
        self.apps: Any = client.AppsV1Api(self.api)
        self.custom: Any = client.CustomObjectsApi(self.api)
        self.ext: Any = client.ApiextensionsV1Api(self.api)

    def apply_crd(self) -> None:
        import yaml

        body = yaml.safe_load(CRD.read_text())
        name = body["metadata"]["name"]
        try:
            current = self.ext.read_custom_resource_definition(name)
            body["metadata"]["resourceVersion"] = current.metadata.resource_version
            self.ext.replace_custom_resource_definition(name, body)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.ext.create_custom_resource_definition(body)

        def established() -> bool:
            crd = self.ext.read_custom_resource_definition(name)
            return any(
                c.type == "Established" and c.status == "True"
                for c in (crd.status.conditions or [])
            )

        wait_until(established, 30, 0.5, what="the WorkerPool CRD to be established")

    def replicas(self, ns: str, name: str) -> int:
        return int(self.apps.read_namespaced_deployment_scale(name, ns).spec.replicas or 0)

    def pods(self, ns: str, selector: str) -> list[Any]:
        """The target's pods that are not being deleted."""
        found = self.core.list_namespaced_pod(ns, label_selector=selector).items
        return [p for p in found if p.metadata.deletion_timestamp is None]

    def pool(self, ns: str, name: str) -> dict[str, Any]:
        return dict(
            self.custom.get_namespaced_custom_object(
                "kubetaskqueue.io", "v1alpha1", ns, "workerpools", name
            )
        )


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    c = Cluster(os.environ[ENV_KUBECONFIG])
    c.apply_crd()
    return c


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    ns = f"ktq-e2e-{uuid.uuid4().hex[:8]}"
    cluster.core.create_namespace({"metadata": {"name": ns}})
    yield ns
    cluster.core.delete_namespace(ns)


def test_crd_rejects_min_above_max(cluster: Cluster, namespace: str) -> None:
    bad = {
        "apiVersion": "kubetaskqueue.io/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": "bad"},
        "spec": {
            "scaleTargetRef": {"name": "w"},
            "redis": {"urlSecretRef": {"name": "r"}},
            "minReplicas": 5,
            "maxReplicas": 2,
        },
    }
    with pytest.raises(ApiException) as err:
        cluster.custom.create_namespaced_custom_object(
            "kubetaskqueue.io", "v1alpha1", namespace, "workerpools", bad
        )
    assert err.value.status == 422
    assert "minReplicas must be less than or equal to maxReplicas" in str(err.value.body)


def test_operator_scales_on_backlog(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    ns, redis_url = namespace, os.environ[ENV_REDIS_URL]
    prefix = f"ktq-e2e-{uuid.uuid4().hex[:8]}"  # our own Redis keys, nobody else's
    labels = {"app": "e2e-workers"}
    url_b64 = base64.b64encode(redis_url.encode()).decode()
    cluster.core.create_namespaced_secret(
        ns, {"metadata": {"name": "redis"}, "data": {"url": url_b64}}
    )
    cluster.apps.create_namespaced_deployment(
        ns,
        {
            "metadata": {"name": "workers"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "terminationGracePeriodSeconds": 0,
                        "containers": [{"name": "w", "image": "registry.k8s.io/pause:3.9"}],
                    },
                },
            },
        },
    )
    cluster.custom.create_namespaced_custom_object(
        "kubetaskqueue.io",
        "v1alpha1",
        ns,
        "workerpools",
        {
            "apiVersion": "kubetaskqueue.io/v1alpha1",
            "kind": "WorkerPool",
            "metadata": {"name": "pool"},
            "spec": {
                "scaleTargetRef": {"name": "workers"},
                "redis": {"urlSecretRef": {"name": "redis", "key": "url"}, "keyPrefix": prefix},
                "topics": [TOPIC],
                "targetTasksPerReplica": PER_REPLICA,
                "minReplicas": 0,
                "maxReplicas": 6,
                "activationTasks": 1,
                "scaleDown": {"stabilizationSeconds": WINDOW_S},
                "scaleUp": {"maxStep": 10},
                "pollSeconds": POLL_S,
            },
        },
    )
    store = RedisStore(connect(redis_url), prefix)
    log_path = tmp_path / "operator.log"
    with log_path.open("w") as log:
        operator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kubetaskqueue_operator",
                "--namespace",
                ns,
                "--lease-namespace",
                ns,
                "--health-port",
                str(free_port()),
            ],
            env={**os.environ, "KUBECONFIG": os.environ[ENV_KUBECONFIG]},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _scenario(cluster, ns, store, labels)
    except BaseException:
        print(log_path.read_text()[-20_000:])
        raise
    finally:
        # Delete the pool while the operator runs, so kopf removes its finalizer.
        cluster.custom.delete_namespaced_custom_object(
            "kubetaskqueue.io", "v1alpha1", ns, "workerpools", "pool"
        )
        try:
            wait_until(lambda: _gone(cluster, ns), 30, 0.5, what="the WorkerPool to be deleted")
        finally:
            operator.terminate()
            operator.wait(timeout=30)
            keys = list(store.client.scan_iter(match=f"{prefix}:*"))
            if keys:
                store.client.delete(*keys)


def _gone(cluster: Cluster, ns: str) -> bool:
    try:
        cluster.pool(ns, "pool")
    except ApiException as exc:
        return exc.status == 404
    return False


def _scenario(cluster: Cluster, ns: str, store: RedisStore, labels: dict[str, str]) -> None:
    selector = ",".join(f"{k}={v}" for k, v in labels.items())

    # The operator has run a round once the pool reports an observedGeneration.
    wait_until(
        lambda: cluster.pool(ns, "pool").get("status", {}).get("observedGeneration"),
        60,
        0.5,
        what="the operator's first round",
    )
    # Empty queue, min 0: after the window the pool goes to zero (it starts held at 1).
    wait_until(
        lambda: cluster.replicas(ns, "workers") == 0,
        WINDOW_S + 4 * POLL_S + 10,
        0.5,
        what="scale to zero while idle",
    )

    # 20 tasks / 5 per replica -> 4 replicas, within one poll (plus API latency).
    tasks = NewTasks([uuid.uuid4().hex for _ in range(20)],
                     [json.dumps({"n": i}) for i in range(20)], num_retries=3)
    store.enqueue(TOPIC, tasks)
    wait_until(lambda: cluster.replicas(ns, "workers") == 4, POLL_S + 5, 0.2,
               what="scale up to 4")
    pool = cluster.pool(ns, "pool")
    assert pool["status"]["backlog"] == 20
    assert pool["status"]["desiredReplicas"] == 4
    ready = {c["type"]: c for c in pool["status"]["conditions"]}
    assert ready["Ready"]["status"] == "True"
    assert ready["RedisReachable"]["status"] == "True"
    events = cluster.core.list_namespaced_event(
        ns, field_selector="involvedObject.name=pool,reason=ScaledUp"
    ).items
    assert events, "no ScaledUp Event was posted"

    # A worker on one pod holds one task; everything else is done.
    pods = wait_until(
        lambda: len(cluster.pods(ns, selector)) == 4 and cluster.pods(ns, selector),
        30,
        0.5,
        what="4 worker pods",
    )
    busy_pod = pods[0].metadata.name
    manager_id = f"{busy_pod}-0e2e0e2e"  # a manager on that pod: <pod>-<8 hex>
    _, claimed = store.claim(TOPIC, 20, 600.0, manager_id)
    assert len(claimed) == 20
    for task in claimed[1:]:
        assert store.ack(TOPIC, task.id, task.token)

    # Held through the window, then down to 1 (never 0: a task is in work);
    # before that the busy pod gets a higher deletion cost than the idle ones.
    lowest = 4
    deadline = time.monotonic() + WINDOW_S + 4 * POLL_S + 10
    while cluster.replicas(ns, "workers") != 1:
        assert time.monotonic() < deadline, "did not scale down to 1 after the window"
        lowest = min(lowest, cluster.replicas(ns, "workers"))
        time.sleep(0.5)
    assert lowest >= 1, "scaled to 0 with a task in work"
    busy = next(p for p in cluster.pods(ns, selector) if p.metadata.name == busy_pod)
    assert (busy.metadata.annotations or {}).get(DELETION_COST) == "1"
    # The ReplicaSet removed the idle pods (cost 0) and kept the busy one.
    wait_until(
        lambda: [p.metadata.name for p in cluster.pods(ns, selector)] == [busy_pod],
        30,
        0.5,
        what="only the busy pod to remain",
    )
    for _ in range(int(3 * POLL_S / 0.5)):
        assert cluster.replicas(ns, "workers") >= 1, "scaled to 0 with a task in work"
        time.sleep(0.5)

    # The last task finishes and the worker leaves: back to zero after the window.
    assert store.ack(TOPIC, claimed[0].id, claimed[0].token)
    wait_until(
        lambda: cluster.replicas(ns, "workers") == 0,
        WINDOW_S + 4 * POLL_S + 10,
        0.5,
        what="scale back to zero",
    )
