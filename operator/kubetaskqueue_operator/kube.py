"""The operator's narrow view of the Kubernetes API.

Handlers talk to ``KubeApi`` only. ``ClientKube`` implements it on the official
``kubernetes`` client; ``FakeKube`` is an in-memory cluster for tests. Every
method here is one RBAC verb in manifests/rbac.yaml, which keeps that list
short and checkable.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubetaskqueue_operator.spec import GROUP, PLURAL, VERSION, TargetRef

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"

# Every (API group, resource, verb) the operator uses, and nothing more: the chart's
# Role and manifests/rbac.yaml are tested against this (docs/operator.md lists why).
REQUIRED_PERMISSIONS = frozenset({
    ("kubetaskqueue.io", "workerpools", "list"),
    ("kubetaskqueue.io", "workerpools", "watch"),
    ("kubetaskqueue.io", "workerpools", "patch"),
    ("kubetaskqueue.io", "workerpools/status", "patch"),
    ("apps", "deployments/scale", "get"),
    ("apps", "deployments/scale", "patch"),
    ("apps", "statefulsets/scale", "get"),
    ("apps", "statefulsets/scale", "patch"),
    ("", "pods", "list"),
    ("", "pods", "patch"),
    ("", "secrets", "get"),
    ("", "events", "create"),
    ("coordination.k8s.io", "leases", "create"),
    ("coordination.k8s.io", "leases", "get"),
    ("coordination.k8s.io", "leases", "update"),
})
COMPONENT = "kubetaskqueue-operator"


class KubeError(Exception):
    """A Kubernetes API call failed; the message names the call and the object."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Scale:
    replicas: int  # spec.replicas of the scale subresource: what we set
    current: int  # status.replicas: pods that exist now
    selector: str  # status.selector: label selector of the target's pods


WORKER_CONTAINER = "worker"


@dataclass(frozen=True)
class Pod:
    name: str
    annotations: Mapping[str, str]
    terminating: bool = False
    phase: str = ""  # status.phase: Pending, Running, Succeeded, Failed, Unknown
    reason: str = ""  # status.reason, e.g. "Evicted"
    message: str = ""  # status.message
    restarts: int = 0  # restartCount of the "worker" container, else the sum over containers
    last_termination: str = ""  # that container's lastState.terminated: "OOMKilled (exit 137)"
    node: str = ""  # spec.nodeName


def pod_from_json(obj: Mapping[str, Any]) -> Pod:
    """A Pod from its API JSON (camelCase keys, as the API server sends it)."""
    meta, spec, status = (obj.get(k) or {} for k in ("metadata", "spec", "status"))
    containers = status.get("containerStatuses") or []
    worker = next((c for c in containers if c.get("name") == WORKER_CONTAINER), None)
    if worker is not None:
        restarts = int(worker.get("restartCount") or 0)
    else:
        restarts = sum(int(c.get("restartCount") or 0) for c in containers)
    terminated = ((worker or {}).get("lastState") or {}).get("terminated")
    last = f"{terminated.get('reason')} (exit {terminated.get('exitCode')})" if terminated else ""
    return Pod(
        name=str(meta.get("name") or ""),
        annotations=dict(meta.get("annotations") or {}),
        terminating=meta.get("deletionTimestamp") is not None,
        phase=str(status.get("phase") or ""),
        reason=str(status.get("reason") or ""),
        message=str(status.get("message") or ""),
        restarts=restarts,
        last_termination=last,
        node=str(spec.get("nodeName") or ""),
    )


@dataclass(frozen=True)
class ObjectRef:
    """What an Event is about."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str = ""


class KubeApi(Protocol):
    def read_secret_value(self, namespace: str, name: str, key: str) -> str: ...

    def get_scale(self, namespace: str, target: TargetRef) -> Scale: ...

    def set_replicas(self, namespace: str, target: TargetRef, replicas: int) -> None: ...

    def list_pods(self, namespace: str, selector: str) -> list[Pod]: ...

    def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None: ...

    def patch_pool_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None: ...

    def post_event(self, about: ObjectRef, type_: str, reason: str, message: str) -> None: ...


def load_kube_config() -> None:
    """In a pod use the service account; elsewhere $KUBECONFIG or ~/.kube/config."""
    from kubernetes import config as kube_config

    config: Any = kube_config  # untyped in older client releases
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


class ClientKube:
    """KubeApi on the official client. Bodies are plain dicts (works across client versions)."""

    def __init__(self, api_client: Any = None) -> None:
        from kubernetes import client  # imported here so tests never need a kubeconfig

        # Typed as Any: client releases differ in model types; we send and read plain fields.
        self._api: Any = api_client or client.ApiClient()
        self._core: Any = client.CoreV1Api(self._api)
        self._custom: Any = client.CustomObjectsApi(self._api)
        self._plurals: dict[tuple[str, str], str] = {}

    def _error(self, what: str, exc: Exception) -> KubeError:
        status = getattr(exc, "status", None)
        reason = getattr(exc, "reason", None) or str(exc)
        return KubeError(f"{what}: {status or ''} {reason}".strip(), status)

    def _plural(self, target: TargetRef) -> str:
        # The scale subresource path needs the plural; ask discovery once per kind.
        key = (target.api_version, target.kind)
        if key not in self._plurals:
            if not target.group:
                raise KubeError(f"scaleTargetRef {target.api_version}: core kinds unsupported")
            found = self._custom.get_api_resources(target.group, target.version)
            for res in found.resources:
                if res.kind == target.kind and "/" not in res.name:
                    self._plurals[key] = res.name
                    break
            else:
                raise KubeError(f"{target.kind} is not served by {target.api_version}", 404)
        return self._plurals[key]

    def read_secret_value(self, namespace: str, name: str, key: str) -> str:
        try:
            secret = self._core.read_namespaced_secret(name, namespace)
        except Exception as exc:
            raise self._error(f"read Secret {namespace}/{name}", exc) from exc
        data = secret.data or {}
        if key not in data:
            raise KubeError(f"Secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(data[key]).decode()

    def get_scale(self, namespace: str, target: TargetRef) -> Scale:
        try:
            body = self._custom.get_namespaced_custom_object_scale(
                target.group, target.version, namespace, self._plural(target), target.name
            )
        except KubeError:
            raise
        except Exception as exc:
            raise self._error(f"get scale of {target} in {namespace}", exc) from exc
        spec, status = body.get("spec") or {}, body.get("status") or {}
        return Scale(
            replicas=int(spec.get("replicas") or 0),
            current=int(status.get("replicas") or 0),
            selector=str(status.get("selector") or ""),
        )

    def set_replicas(self, namespace: str, target: TargetRef, replicas: int) -> None:
        try:
            self._custom.patch_namespaced_custom_object_scale(
                target.group,
                target.version,
                namespace,
                self._plural(target),
                target.name,
                {"spec": {"replicas": replicas}},
                _content_type="application/merge-patch+json",
            )
        except KubeError:
            raise
        except Exception as exc:
            raise self._error(f"scale {target} in {namespace} to {replicas}", exc) from exc

    def list_pods(self, namespace: str, selector: str) -> list[Pod]:
        try:
            pods = self._core.list_namespaced_pod(namespace, label_selector=selector)
        except Exception as exc:
            raise self._error(f"list pods {selector!r} in {namespace}", exc) from exc
        return [pod_from_json(self._api.sanitize_for_serialization(p)) for p in pods.items]

    def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        try:
            self._core.patch_namespaced_pod(
                name, namespace, {"metadata": {"annotations": dict(annotations)}}
            )
        except Exception as exc:
            raise self._error(f"annotate pod {namespace}/{name}", exc) from exc

    def patch_pool_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        try:
            self._custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"status": dict(status)},
                _content_type="application/merge-patch+json",
            )
        except Exception as exc:
            raise self._error(f"patch status of WorkerPool {namespace}/{name}", exc) from exc

    def post_event(self, about: ObjectRef, type_: str, reason: str, message: str) -> None:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "metadata": {"generateName": f"{about.name}.", "namespace": about.namespace},
            "involvedObject": {
                "apiVersion": about.api_version,
                "kind": about.kind,
                "name": about.name,
                "namespace": about.namespace,
                "uid": about.uid or None,
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self._core.create_namespaced_event(about.namespace, body)
        except Exception as exc:
            raise self._error(f"post Event {reason} for {about.kind} {about.name}", exc) from exc


def _selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    """Equality-based selectors only ("a=b,c=d"), which is what scale subresources report."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key, _, value = term.partition("=")
        if labels.get(key.strip()) != value.strip():
            return False
    return True


@dataclass
class FakeTarget:
    replicas: int
    selector: str
    pods_exist: int | None = None  # status.replicas; None = same as replicas


@dataclass
class FakePod:
    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    phase: str = "Running"
    reason: str = ""
    message: str = ""
    restarts: int = 0
    last_termination: str = ""
    node: str = ""


@dataclass
class FakeKube:
    """An in-memory cluster: enough of secrets, scale, pods, status and events for tests.

    Set ``fail[method_name] = KubeError(...)`` to make that call fail.
    """

    secrets: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    targets: dict[tuple[str, str, str], FakeTarget] = field(default_factory=dict)
    pods: dict[tuple[str, str], FakePod] = field(default_factory=dict)
    statuses: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    events: list[tuple[ObjectRef, str, str, str]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)  # method names in call order
    fail: dict[str, Exception] = field(default_factory=dict)

    def _enter(self, method: str) -> None:
        self.calls.append(method)
        if method in self.fail:
            raise self.fail[method]

    def read_secret_value(self, namespace: str, name: str, key: str) -> str:
        self._enter("read_secret_value")
        data = self.secrets.get((namespace, name))
        if data is None:
            raise KubeError(f"read Secret {namespace}/{name}: 404 Not Found", 404)
        if key not in data:
            raise KubeError(f"Secret {namespace}/{name} has no key {key!r}")
        return data[key]

    def _target(self, namespace: str, target: TargetRef) -> FakeTarget:
        found = self.targets.get((namespace, target.kind, target.name))
        if found is None:
            raise KubeError(f"get scale of {target} in {namespace}: 404 Not Found", 404)
        return found

    def get_scale(self, namespace: str, target: TargetRef) -> Scale:
        self._enter("get_scale")
        t = self._target(namespace, target)
        current = t.replicas if t.pods_exist is None else t.pods_exist
        return Scale(replicas=t.replicas, current=current, selector=t.selector)

    def set_replicas(self, namespace: str, target: TargetRef, replicas: int) -> None:
        self._enter("set_replicas")
        self._target(namespace, target).replicas = replicas

    def list_pods(self, namespace: str, selector: str) -> list[Pod]:
        self._enter("list_pods")
        return [
            Pod(
                name=name,
                annotations=dict(pod.annotations),
                phase=pod.phase,
                reason=pod.reason,
                message=pod.message,
                restarts=pod.restarts,
                last_termination=pod.last_termination,
                node=pod.node,
            )
            for (ns, name), pod in sorted(self.pods.items())
            if ns == namespace and _selector_matches(selector, pod.labels)
        ]

    def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        self._enter("annotate_pod")
        pod = self.pods.get((namespace, name))
        if pod is None:
            raise KubeError(f"annotate pod {namespace}/{name}: 404 Not Found", 404)
        pod.annotations.update(annotations)

    def patch_pool_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self._enter("patch_pool_status")
        self.statuses.setdefault((namespace, name), {}).update(status)

    def post_event(self, about: ObjectRef, type_: str, reason: str, message: str) -> None:
        self._enter("post_event")
        self.events.append((about, type_, reason, message))
