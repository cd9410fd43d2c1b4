"""The operator's narrow view of the Kubernetes API.

Handlers talk to ``KubeApi`` only. ``ClientKube`` implements it on a
``lightkube`` Client; ``FakeKube`` is an in-memory cluster for tests. Every
method here is one RBAC verb in manifests/rbac.yaml, which keeps that list
short and checkable.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

from kubetaskqueue_operator.spec import GROUP, KIND, PLURAL, VERSION, TargetRef

if TYPE_CHECKING:  # lightkube is imported lazily: the pure modules work without it
    from lightkube import Client, KubeConfig
    from lightkube.generic_resource import GenericNamespacedResource

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


def load_kube_config() -> KubeConfig:
    """In a pod the service account; elsewhere $KUBECONFIG or ~/.kube/config."""
    from lightkube import KubeConfig

    return KubeConfig.from_env()


def http_status(exc: Exception) -> int | None:
    """The HTTP status of a failed lightkube call (None: no answer, e.g. a timeout)."""
    import httpx2

    if not isinstance(exc, httpx2.HTTPStatusError):  # lightkube's ApiError is one too
        return None
    return exc.response.status_code if exc.response is not None else None


@cache
def _worker_pool() -> type[GenericNamespacedResource]:
    from lightkube.generic_resource import create_namespaced_resource

    return create_namespaced_resource(GROUP, VERSION, KIND, PLURAL)


class ClientKube:
    """KubeApi on a lightkube Client (every call times out after 10 s)."""

    def __init__(self, client: Client | None = None) -> None:
        from lightkube import Client  # imported here so tests never need a kubeconfig

        self._client = client or Client(load_kube_config(), field_manager=COMPONENT)
        self._scales: dict[tuple[str, str], Any] = {}

    def _error(self, what: str, exc: Exception) -> KubeError:
        status = http_status(exc)
        return KubeError(f"{what}: {status or ''} {exc}".strip(), status)

    def _scale_of(self, target: TargetRef) -> Any:
        """The target kind's scale subresource: built-in kinds from lightkube, others by
        asking discovery for their plural (once per kind)."""
        from lightkube import LoadResourceError
        from lightkube.core.resource_registry import resource_registry

        key = (target.api_version, target.kind)
        if key not in self._scales:
            try:
                kind: Any = resource_registry.load(target.api_version, target.kind)
            except LoadResourceError:
                kind = self._discover(target)
            if not hasattr(kind, "Scale"):
                raise KubeError(f"{target.kind} in {target.api_version} has no scale subresource")
            self._scales[key] = kind.Scale
        return self._scales[key]

    def _discover(self, target: TargetRef) -> Any:
        from lightkube.config.client_adapter import Client as HttpClient
        from lightkube.config.client_adapter import ConnectionParams
        from lightkube.generic_resource import create_namespaced_resource

        if not target.group:
            raise KubeError(f"{target.kind} is not served by {target.api_version}", 404)
        with HttpClient(self._client.config, ConnectionParams()) as http:
            answer = http.get(f"/apis/{target.group}/{target.version}")
        answer.raise_for_status()
        for res in answer.json().get("resources") or []:
            if res.get("kind") == target.kind and "/" not in res.get("name", "/"):
                plural = str(res["name"])
                return create_namespaced_resource(target.group, target.version, target.kind, plural)
        raise KubeError(f"{target.kind} is not served by {target.api_version}", 404)

    def read_secret_value(self, namespace: str, name: str, key: str) -> str:
        from lightkube.resources.core_v1 import Secret

        try:
            secret = self._client.get(Secret, name, namespace=namespace)
        except Exception as exc:
            raise self._error(f"read Secret {namespace}/{name}", exc) from exc
        data = secret.data or {}
        if key not in data:
            raise KubeError(f"Secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(data[key]).decode()

    def get_scale(self, namespace: str, target: TargetRef) -> Scale:
        try:
            body = self._client.get(self._scale_of(target), target.name, namespace=namespace)
        except KubeError:
            raise
        except Exception as exc:
            raise self._error(f"get scale of {target} in {namespace}", exc) from exc
        spec, status = body.spec, body.status
        return Scale(
            replicas=int((spec and spec.replicas) or 0),
            current=int((status and status.replicas) or 0),
            selector=str((status and status.selector) or ""),
        )

    def set_replicas(self, namespace: str, target: TargetRef, replicas: int) -> None:
        from lightkube.types import PatchType

        try:
            self._client.patch(
                self._scale_of(target),
                target.name,
                {"spec": {"replicas": replicas}},
                namespace=namespace,
                patch_type=PatchType.MERGE,
            )
        except KubeError:
            raise
        except Exception as exc:
            raise self._error(f"scale {target} in {namespace} to {replicas}", exc) from exc

    def list_pods(self, namespace: str, selector: str) -> list[Pod]:
        from lightkube.resources.core_v1 import Pod as PodResource

        try:
            # lightkube builds selectors from a dict; an "exists" term (value None) is
            # encoded as its bare key, so the scale subresource's selector passes unchanged.
            pods = self._client.list(PodResource, namespace=namespace, labels={selector: None})
            return [pod_from_json(p.to_dict()) for p in pods]
        except Exception as exc:
            raise self._error(f"list pods {selector!r} in {namespace}", exc) from exc

    def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        from lightkube.resources.core_v1 import Pod as PodResource

        try:  # a strategic merge patch, lightkube's default
            self._client.patch(
                PodResource,
                name,
                {"metadata": {"annotations": dict(annotations)}},
                namespace=namespace,
            )
        except Exception as exc:
            raise self._error(f"annotate pod {namespace}/{name}", exc) from exc

    def patch_pool_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        from lightkube.types import PatchType

        try:
            self._client.patch(
                _worker_pool().Status,
                name,
                {"status": dict(status)},
                namespace=namespace,
                patch_type=PatchType.MERGE,
            )
        except Exception as exc:
            raise self._error(f"patch status of WorkerPool {namespace}/{name}", exc) from exc

    def post_event(self, about: ObjectRef, type_: str, reason: str, message: str) -> None:
        from lightkube.models.core_v1 import EventSource, ObjectReference
        from lightkube.models.meta_v1 import ObjectMeta
        from lightkube.resources.core_v1 import Event

        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        event = Event(
            metadata=ObjectMeta(generateName=f"{about.name}.", namespace=about.namespace),
            involvedObject=ObjectReference(
                apiVersion=about.api_version,
                kind=about.kind,
                name=about.name,
                namespace=about.namespace,
                uid=about.uid or None,
            ),
            type=type_,
            reason=reason,
            message=message[:1024],
            source=EventSource(component=COMPONENT),
            reportingComponent=COMPONENT,
            firstTimestamp=now,
            lastTimestamp=now,
            count=1,
        )
        try:
            self._client.create(event, namespace=about.namespace)
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
