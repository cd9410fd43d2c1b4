"""ClientKube and ClientLeaseApi on the real kubernetes client, against a stub API server.

No cluster here: a tiny HTTP server answers the few paths the operator uses and
records what it was sent, so URL paths, verbs, content types and bodies are checked.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from kubetaskqueue_operator.kube import ClientKube, FakeKube, FakePod, KubeError, ObjectRef, Pod
from kubetaskqueue_operator.leader import ClientLeaseApi, LeaderElector
from kubetaskqueue_operator.spec import TargetRef

client = pytest.importorskip("kubernetes.client")

SCALE = "/apis/apps/v1/namespaces/jobs/deployments/workers/scale"
LEASE = "/apis/coordination.k8s.io/v1/namespaces/jobs/leases/op"
READY = {"image": "w:1", "imageID": "", "ready": True}  # required containerStatuses fields


class Stub(BaseHTTPRequestHandler):
    routes: ClassVar[dict[tuple[str, str], tuple[int, Any]]] = {}
    seen: ClassVar[list[tuple[str, str, str, Any]]] = []

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        path = self.path.split("?")[0]
        self.seen.append((self.command, self.path, self.headers.get("Content-Type", ""), body))
        status, answer = self.routes.get(
            (self.command, path), (404, {"kind": "Status", "code": 404})
        )
        if callable(answer):
            answer = answer(body)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = _reply

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[Any]:
    Stub.routes, Stub.seen = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    conf = client.Configuration()
    conf.host = f"http://127.0.0.1:{server.server_address[1]}"
    yield client.ApiClient(conf)
    server.shutdown()


def test_scale_secret_pods_status_and_events(api: Any) -> None:
    Stub.routes = {
        ("GET", "/apis/apps/v1"): (
            200,
            {
                "kind": "APIResourceList",
                "groupVersion": "apps/v1",
                "resources": [
                    {
                        "name": "deployments",
                        "kind": "Deployment",
                        "namespaced": True,
                        "singularName": "deployment",
                        "verbs": ["get"],
                    },
                    {
                        "name": "deployments/scale",
                        "kind": "Scale",
                        "namespaced": True,
                        "singularName": "",
                        "verbs": ["get", "patch"],
                    },
                ],
            },
        ),
        ("GET", SCALE): (
            200,
            {
                "kind": "Scale",
                "spec": {"replicas": 2},
                "status": {"replicas": 3, "selector": "app=w"},
            },
        ),
        ("PATCH", SCALE): (200, {"kind": "Scale", "spec": {"replicas": 5}}),
        ("GET", "/api/v1/namespaces/jobs/secrets/redis"): (
            200,
            {
                "kind": "Secret",
                "metadata": {"name": "redis"},
                "data": {"url": base64.b64encode(b"redis://r:6379/0").decode()},
            },
        ),
        ("GET", "/api/v1/namespaces/jobs/pods"): (
            200,
            {
                "kind": "PodList",
                "metadata": {},
                "items": [
                    {
                        "metadata": {"name": "w-1", "annotations": {"a": "b"}},
                        "spec": {"nodeName": "node-a", "containers": [{"name": "worker"}]},
                        "status": {
                            "phase": "Running",
                            "containerStatuses": [
                                {"name": "sidecar", "restartCount": 7, **READY},
                                {
                                    "name": "worker",
                                    "restartCount": 2,
                                    **READY,
                                    "lastState": {
                                        "terminated": {"reason": "OOMKilled", "exitCode": 137}
                                    },
                                },
                            ],
                        },
                    },
                    {
                        "metadata": {"name": "w-2", "deletionTimestamp": "2024-01-01T00:00:00Z"},
                        "status": {
                            "phase": "Failed",
                            "reason": "Evicted",
                            "message": "The node was low on resource: memory.",
                            "containerStatuses": [
                                {"name": "a", "restartCount": 1, **READY},
                                {"name": "b", "restartCount": 3, **READY},
                            ],
                        },
                    },
                ],
            },
        ),
        ("PATCH", "/api/v1/namespaces/jobs/pods/w-1"): (200, {"metadata": {"name": "w-1"}}),
        ("PATCH", "/apis/kubetaskqueue.io/v1alpha1/namespaces/jobs/workerpools/pool/status"): (
            200,
            {"kind": "WorkerPool"},
        ),
        ("POST", "/api/v1/namespaces/jobs/events"): (201, lambda body: body),
    }
    kube = ClientKube(api)
    target = TargetRef("apps/v1", "Deployment", "workers")
    assert kube.read_secret_value("jobs", "redis", "url") == "redis://r:6379/0"
    scale = kube.get_scale("jobs", target)
    assert (scale.replicas, scale.current, scale.selector) == (2, 3, "app=w")
    kube.set_replicas("jobs", target, 5)
    pods = kube.list_pods("jobs", "app=w")
    assert [(p.name, p.terminating) for p in pods] == [("w-1", False), ("w-2", True)]
    w1, w2 = pods
    assert (w1.annotations, w1.phase, w1.node) == ({"a": "b"}, "Running", "node-a")
    assert (w1.restarts, w1.last_termination) == (2, "OOMKilled (exit 137)")  # "worker" only
    assert (w2.phase, w2.reason, w2.message) == (
        "Failed",
        "Evicted",
        "The node was low on resource: memory.",
    )
    assert (w2.restarts, w2.last_termination, w2.node) == (4, "", "")  # no "worker": the sum
    kube.annotate_pod("jobs", "w-1", {"controller.kubernetes.io/pod-deletion-cost": "2"})
    kube.patch_pool_status("jobs", "pool", {"desiredReplicas": 5})
    kube.post_event(
        ObjectRef("kubetaskqueue.io/v1alpha1", "WorkerPool", "jobs", "pool", "u1"),
        "Normal",
        "ScaledUp",
        "Scaled deployment/workers from 2 to 5",
    )

    sent = {(m, p.split("?")[0]): (ct, body) for m, p, ct, body in Stub.seen}
    assert sent[("PATCH", SCALE)] == ("application/merge-patch+json", {"spec": {"replicas": 5}})
    assert any(
        p == "/api/v1/namespaces/jobs/pods?labelSelector=app%3Dw" for _, p, _, _ in Stub.seen
    )
    assert sent[("PATCH", "/api/v1/namespaces/jobs/pods/w-1")][1] == {
        "metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": "2"}}
    }
    status_ct, status_body = sent[
        ("PATCH", "/apis/kubetaskqueue.io/v1alpha1/namespaces/jobs/workerpools/pool/status")
    ]
    assert (status_ct, status_body) == (
        "application/merge-patch+json",
        {"status": {"desiredReplicas": 5}},
    )
    event = sent[("POST", "/api/v1/namespaces/jobs/events")][1]
    assert event["involvedObject"]["kind"] == "WorkerPool"
    assert (event["reason"], event["type"]) == ("ScaledUp", "Normal")
    # Discovery of the plural is cached: one GET /apis/apps/v1 for both scale calls.
    assert [p for m, p, _, _ in Stub.seen if p == "/apis/apps/v1"] == ["/apis/apps/v1"]


def test_api_errors_become_kube_errors(api: Any) -> None:
    kube = ClientKube(api)
    with pytest.raises(KubeError) as err:
        kube.read_secret_value("jobs", "missing", "url")
    assert err.value.status == 404
    assert "read Secret jobs/missing" in str(err.value)


def test_lease_create_then_renew(api: Any) -> None:
    stored: dict[str, Any] = {}

    def create(body: dict[str, Any]) -> dict[str, Any]:
        stored.update(body, metadata={**body["metadata"], "resourceVersion": "7"})
        Stub.routes[("GET", LEASE)] = (200, stored)
        return stored

    Stub.routes = {
        ("POST", "/apis/coordination.k8s.io/v1/namespaces/jobs/leases"): (201, create),
        ("PUT", LEASE): (200, lambda body: body),
    }
    elector = LeaderElector(ClientLeaseApi("jobs", "op", api), "me")
    assert elector.try_acquire_or_renew()  # GET 404 -> POST
    assert elector.try_acquire_or_renew()  # GET ours -> PUT with resourceVersion
    put = next(body for m, _, _, body in Stub.seen if m == "PUT")
    assert put["metadata"]["resourceVersion"] == "7"
    assert put["spec"]["holderIdentity"] == "me"
    renewed = dt.datetime.fromisoformat(put["spec"]["renewTime"].replace("Z", "+00:00"))
    assert renewed.tzinfo is not None


def test_fake_kube_reports_the_same_pod_fields() -> None:
    kube = FakeKube()
    kube.pods[("jobs", "w-1")] = FakePod(
        labels={"app": "w"},
        phase="Failed",
        reason="Evicted",
        message="low on memory",
        restarts=3,
        last_termination="OOMKilled (exit 137)",
        node="node-a",
    )
    assert kube.list_pods("jobs", "app=w") == [
        Pod(
            name="w-1",
            annotations={},
            phase="Failed",
            reason="Evicted",
            message="low on memory",
            restarts=3,
            last_termination="OOMKilled (exit 137)",
            node="node-a",
        )
    ]
