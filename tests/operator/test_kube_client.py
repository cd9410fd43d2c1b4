"""ClientKube and ClientLeaseApi on the real lightkube client, against a stub API server.

No cluster here: a tiny HTTP server answers the few paths the operator uses and
records what it was sent, so URL paths, verbs, content types, credentials and
bodies are checked. The clients are built the way the operator builds them:
from $KUBECONFIG (a kubeconfig pointing at the stub, with a bearer token).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
from kubetaskqueue_operator.kube import ClientKube, FakeKube, FakePod, KubeError, ObjectRef, Pod
from kubetaskqueue_operator.leader import ClientLeaseApi, LeaderElector, LeaseConflict, LeaseRecord
from kubetaskqueue_operator.spec import TargetRef

pytest.importorskip("lightkube")

SCALE = "/apis/apps/v1/namespaces/jobs/deployments/workers/scale"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/jobs/leases"
LEASE = f"{LEASES}/op"
EVENTS = "/api/v1/namespaces/jobs/events"
TOKEN = "t0ken"
FIELD_MANAGER = {"fieldManager": ["kubetaskqueue-operator"]}


class Stub(BaseHTTPRequestHandler):
    routes: ClassVar[dict[tuple[str, str], tuple[int, Any]]] = {}
    seen: ClassVar[list[tuple[str, str, str, Any]]] = []
    auth: ClassVar[set[str]] = set()

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        path = self.path.split("?")[0]
        self.seen.append((self.command, self.path, self.headers.get("Content-Type", ""), body))
        self.auth.add(self.headers.get("Authorization", ""))
        status, answer = self.routes.get(
            (self.command, path), (404, {"kind": "Status", "code": 404, "message": "not found"})
        )
        if callable(answer):
            status, answer = answer(body)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_PUT = _reply

    def log_message(self, *args: Any) -> None:
        pass


def sent(method: str, path: str) -> tuple[str, Any]:
    """Content type and body of the one request sent as ``method path`` (any query)."""
    [found] = [(ct, body) for m, p, ct, body in Stub.seen if (m, p.split("?")[0]) == (method, path)]
    return found


def query(method: str, path: str) -> dict[str, list[str]]:
    [found] = [p for m, p, _, _ in Stub.seen if (m, p.split("?")[0]) == (method, path)]
    return parse_qs(urlsplit(found).query)


@pytest.fixture(autouse=True)
def api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A stub API server, and $KUBECONFIG pointing at it (outside a pod, as here)."""
    Stub.routes, Stub.seen, Stub.auth = {}, [], set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "stub",
                        "cluster": {"server": f"http://127.0.0.1:{server.server_port}"},
                    }
                ],
                "users": [{"name": "op", "user": {"token": TOKEN}}],
                "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "op"}}],
                "current-context": "stub",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    yield
    server.shutdown()
    server.server_close()
    assert Stub.auth <= {f"Bearer {TOKEN}"}  # every call carried the kubeconfig's token


READY = {"image": "w:1", "imageID": "", "ready": True}


def test_scale_secret_pods_status_and_events() -> None:
    Stub.routes = {
        ("GET", SCALE): (
            200,
            {
                "kind": "Scale",
                "apiVersion": "autoscaling/v1",
                "metadata": {"name": "workers"},
                "spec": {"replicas": 2},
                "status": {"replicas": 3, "selector": "app=w,tier in (a,b)"},
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
            {"kind": "WorkerPool", "apiVersion": "kubetaskqueue.io/v1alpha1"},
        ),
        ("POST", EVENTS): (201, lambda body: (201, body)),
    }
    kube = ClientKube()
    target = TargetRef("apps/v1", "Deployment", "workers")
    assert kube.read_secret_value("jobs", "redis", "url") == "redis://r:6379/0"
    scale = kube.get_scale("jobs", target)
    assert (scale.replicas, scale.current, scale.selector) == (2, 3, "app=w,tier in (a,b)")
    kube.set_replicas("jobs", target, 5)
    pods = kube.list_pods("jobs", scale.selector)
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

    assert sent("PATCH", SCALE) == ("application/merge-patch+json", {"spec": {"replicas": 5}})
    # The scale subresource's selector goes to the API server unchanged (set-based terms too).
    assert query("GET", "/api/v1/namespaces/jobs/pods") == {
        "labelSelector": ["app=w,tier in (a,b)"]
    }
    assert sent("PATCH", "/api/v1/namespaces/jobs/pods/w-1") == (
        "application/strategic-merge-patch+json",
        {"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": "2"}}},
    )
    status = "/apis/kubetaskqueue.io/v1alpha1/namespaces/jobs/workerpools/pool/status"
    assert sent("PATCH", status) == (
        "application/merge-patch+json",
        {"status": {"desiredReplicas": 5}},
    )
    event_ct, event = sent("POST", EVENTS)
    assert event_ct == "application/json"
    assert event["involvedObject"] == {
        "apiVersion": "kubetaskqueue.io/v1alpha1",
        "kind": "WorkerPool",
        "name": "pool",
        "namespace": "jobs",
        "uid": "u1",
    }
    assert event["metadata"] == {"generateName": "pool.", "namespace": "jobs"}
    assert (event["reason"], event["type"], event["count"]) == ("ScaledUp", "Normal", 1)
    assert event["message"] == "Scaled deployment/workers from 2 to 5"
    assert event["source"] == {"component": "kubetaskqueue-operator"}
    assert event["firstTimestamp"] == event["lastTimestamp"]
    assert dt.datetime.strptime(event["firstTimestamp"], "%Y-%m-%dT%H:%M:%SZ")
    # Writes name the operator as their field manager (kubectl ... --show-managed-fields).
    for method, path in [("PATCH", SCALE), ("PATCH", status), ("POST", EVENTS)]:
        assert query(method, path) == FIELD_MANAGER, (method, path)
    # Built-in kinds need no discovery: lightkube knows their scale subresource.
    assert [p for _, p, _, _ in Stub.seen if p.split("?")[0] == "/apis/apps/v1"] == []


def test_custom_kinds_find_their_plural_by_discovery_once() -> None:
    rollout_scale = "/apis/argoproj.io/v1alpha1/namespaces/jobs/rollouts/workers/scale"
    Stub.routes = {
        ("GET", "/apis/argoproj.io/v1alpha1"): (
            200,
            {
                "kind": "APIResourceList",
                "groupVersion": "argoproj.io/v1alpha1",
                "resources": [
                    {"name": "rollouts", "kind": "Rollout", "namespaced": True, "verbs": ["get"]},
                    {"name": "rollouts/scale", "kind": "Scale", "namespaced": True, "verbs": []},
                ],
            },
        ),
        ("GET", rollout_scale): (
            200,
            {
                "kind": "Scale",
                "spec": {"replicas": 1},
                "status": {"replicas": 1, "selector": "a=b"},
            },
        ),
        ("PATCH", rollout_scale): (200, {"kind": "Scale", "spec": {"replicas": 2}}),
    }
    kube = ClientKube()
    target = TargetRef("argoproj.io/v1alpha1", "Rollout", "workers")
    assert kube.get_scale("jobs", target).selector == "a=b"
    kube.set_replicas("jobs", target, 2)
    assert sent("PATCH", rollout_scale) == (
        "application/merge-patch+json",
        {"spec": {"replicas": 2}},
    )
    assert [p for _, p, _, _ in Stub.seen if p == "/apis/argoproj.io/v1alpha1"] == [
        "/apis/argoproj.io/v1alpha1"
    ]
    with pytest.raises(KubeError, match=r"Nope is not served by argoproj\.io/v1alpha1") as err:
        ClientKube().get_scale("jobs", TargetRef("argoproj.io/v1alpha1", "Nope", "x"))
    assert err.value.status == 404


def test_api_errors_become_kube_errors() -> None:
    Stub.routes = {
        ("PATCH", SCALE): (
            403,
            {"kind": "Status", "code": 403, "message": 'deployments.apps "workers" is forbidden'},
        )
    }
    kube = ClientKube()
    with pytest.raises(KubeError) as err:
        kube.read_secret_value("jobs", "missing", "url")
    assert err.value.status == 404
    assert str(err.value).startswith("read Secret jobs/missing: 404")
    with pytest.raises(KubeError) as err:
        kube.set_replicas("jobs", TargetRef("apps/v1", "Deployment", "workers"), 3)
    assert err.value.status == 403
    assert "forbidden" in str(err.value)


def test_an_unreachable_api_server_is_a_kube_error_without_status(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    kubeconfig = Path(str(tmp_path / "kubeconfig"))
    config = json.loads(kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = "http://127.0.0.1:1"  # nothing listens
    kubeconfig.write_text(json.dumps(config))
    with pytest.raises(KubeError) as err:
        ClientKube().list_pods("jobs", "app=w")
    assert err.value.status is None
    assert str(err.value).startswith("list pods 'app=w' in jobs:")


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def serve_lease(initial: dict[str, Any] | None) -> dict[str, Any]:
    """A Lease store behind the stub: create (409 if present), read, replace (409 if stale)."""
    store: dict[str, Any] = {"lease": initial, "version": 7}

    def stored() -> tuple[int, Any]:
        if store["lease"] is None:
            return 404, {"kind": "Status", "code": 404, "message": "not found"}
        return 200, store["lease"]

    def write(body: dict[str, Any], *, create: bool) -> tuple[int, Any]:
        current = store["lease"]
        stale = (
            (current is not None)
            if create
            else (
                current is None
                or body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]
            )
        )
        if stale:
            return 409, {"kind": "Status", "code": 409, "message": "conflict"}
        store["version"] += 1
        store["lease"] = {
            **body,
            "metadata": {**body["metadata"], "resourceVersion": str(store["version"])},
        }
        return 200, store["lease"]

    Stub.routes = {
        ("GET", LEASE): (200, lambda _: stored()),
        ("POST", LEASES): (201, lambda body: write(body, create=True)),
        ("PUT", LEASE): (200, lambda body: write(body, create=False)),
    }
    return store


def test_lease_create_renew_and_release() -> None:
    store = serve_lease(None)
    clock = Clock(1_700_000_000.0)  # a whole second: MicroTime still needs six digits
    elector = LeaderElector(ClientLeaseApi("jobs", "op"), "me", clock=clock)
    assert elector.try_acquire_or_renew()  # GET 404 -> POST
    _, created = sent("POST", LEASES)
    assert created["spec"] == {
        "holderIdentity": "me",
        "leaseDurationSeconds": 15,
        "leaseTransitions": 0,
        "renewTime": "2023-11-14T22:13:20.000000Z",
    }
    assert created["metadata"] == {"name": "op", "namespace": "jobs"}
    clock.t += 2.5
    assert elector.try_acquire_or_renew()  # GET ours -> PUT with resourceVersion
    put_ct, put = sent("PUT", LEASE)
    assert put_ct == "application/json"
    assert put["metadata"]["resourceVersion"] == "8"
    assert put["spec"]["holderIdentity"] == "me"
    assert put["spec"]["renewTime"] == "2023-11-14T22:13:22.500000Z"
    renewed = dt.datetime.fromisoformat(put["spec"]["renewTime"].replace("Z", "+00:00"))
    assert renewed.timestamp() == clock.t

    other = LeaderElector(ClientLeaseApi("jobs", "op"), "other", clock=clock)
    assert not other.try_acquire_or_renew()  # held and fresh
    elector.release()
    assert store["lease"]["spec"] == {"leaseDurationSeconds": 15, "leaseTransitions": 0}
    assert other.try_acquire_or_renew()  # released: no need to wait for expiry
    assert (
        store["lease"]["spec"]["holderIdentity"],
        store["lease"]["spec"]["leaseTransitions"],
    ) == (
        "other",
        1,
    )


@pytest.mark.parametrize("spec", [{}, None], ids=["empty spec", "no spec"])
def test_a_lease_made_by_the_chart_with_an_empty_spec_is_taken(spec: dict[str, Any] | None) -> None:
    lease: dict[str, Any] = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "op", "namespace": "jobs", "resourceVersion": "7",
                     "labels": {"app.kubernetes.io/managed-by": "Helm"},
                     "annotations": {"meta.helm.sh/release-name": "ktq"}},
    }
    if spec is not None:
        lease["spec"] = spec
    store = serve_lease(lease)
    api = ClientLeaseApi("jobs", "op")
    record = api.read()
    assert record is not None
    assert (record.holder, record.renewed_at, record.duration_s, record.version) == (
        None,
        None,
        0.0,
        "7",
    )
    assert LeaderElector(api, "me").try_acquire_or_renew()  # no POST: the Lease exists
    assert [m for m, _, _, _ in Stub.seen] == ["GET", "GET", "PUT"]
    assert store["lease"]["spec"]["holderIdentity"] == "me"
    assert store["lease"]["metadata"]["resourceVersion"] == "8"
    # The chart's labels and Helm's ownership annotation survive the replace.
    assert store["lease"]["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "Helm"}
    assert store["lease"]["metadata"]["annotations"] == {"meta.helm.sh/release-name": "ktq"}


def test_lease_races_are_conflicts_not_errors() -> None:
    serve_lease(None)
    api = ClientLeaseApi("jobs", "op")
    assert LeaderElector(api, "a").try_acquire_or_renew()
    record = api.read()
    assert record is not None
    with pytest.raises(LeaseConflict):
        api.create(LeaseRecord("b", 1.0, 15, 0))
    with pytest.raises(LeaseConflict):
        api.replace(LeaseRecord("b", 1.0, 15, 0, version="6"))  # stale resourceVersion


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
