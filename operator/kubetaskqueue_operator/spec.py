"""Reading a WorkerPool's ``spec`` into typed values (pure; the CRD holds the defaults too).

The API server already validates and defaults the spec through the CRD schema;
this module repeats the defaults so the operator also works on objects created
before a CRD upgrade, and turns anything still wrong into one clear SpecError.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubetaskqueue_operator.policy import ScalePolicy

GROUP = "kubetaskqueue.io"
VERSION = "v1alpha1"
PLURAL = "workerpools"
KIND = "WorkerPool"

DEFAULT_POLL_S = 15.0
DEFAULT_KEY_PREFIX = "kubetaskqueue"  # the core's default Redis key namespace


class SpecError(ValueError):
    """The WorkerPool spec cannot be used; the message says which field and why."""


@dataclass(frozen=True)
class TargetRef:
    api_version: str
    kind: str
    name: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.name}"


@dataclass(frozen=True)
class SecretKeyRef:
    name: str
    key: str


@dataclass(frozen=True)
class PoolSpec:
    target: TargetRef
    redis_url_secret: SecretKeyRef
    key_prefix: str
    topics: tuple[str, ...] | None  # None = every topic in Redis
    policy: ScalePolicy
    poll_s: float


def _int(spec: Mapping[str, Any], path: str, default: int) -> int:
    node: Any = spec
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    if node is None:
        return default
    if isinstance(node, bool) or not isinstance(node, int | float) or node != int(node):
        raise SpecError(f"spec.{path} must be a whole number, got {node!r}")
    return int(node)


def parse_spec(spec: Mapping[str, Any]) -> PoolSpec:
    """Turn ``WorkerPool.spec`` into a PoolSpec, or raise SpecError."""
    ref = spec.get("scaleTargetRef") or {}
    name = ref.get("name")
    if not name:
        raise SpecError("spec.scaleTargetRef.name is required (the worker Deployment's name)")
    target = TargetRef(
        api_version=str(ref.get("apiVersion") or "apps/v1"),
        kind=str(ref.get("kind") or "Deployment"),
        name=str(name),
    )
    secret_ref = (spec.get("redis") or {}).get("urlSecretRef") or {}
    if not secret_ref.get("name"):
        raise SpecError("spec.redis.urlSecretRef.name is required (a Secret holding the Redis URL)")
    secret = SecretKeyRef(name=str(secret_ref["name"]), key=str(secret_ref.get("key") or "url"))
    key_prefix = str((spec.get("redis") or {}).get("keyPrefix") or DEFAULT_KEY_PREFIX)
    topics_raw = spec.get("topics") or []
    topics = tuple(str(t) for t in topics_raw) if topics_raw else None
    try:
        policy = ScalePolicy(
            target_tasks_per_replica=_int(spec, "targetTasksPerReplica", 10),
            min_replicas=_int(spec, "minReplicas", 0),
            max_replicas=_int(spec, "maxReplicas", 10),
            activation_tasks=_int(spec, "activationTasks", 1),
            stabilization_s=_int(spec, "scaleDown.stabilizationSeconds", 300),
            max_step=_int(spec, "scaleUp.maxStep", 10),
        )
    except ValueError as exc:
        raise SpecError(str(exc)) from exc
    poll_s = float(_int(spec, "pollSeconds", int(DEFAULT_POLL_S)))
    if poll_s < 1:
        raise SpecError("spec.pollSeconds must be >= 1")
    return PoolSpec(target, secret, key_prefix, topics, policy, poll_s)
