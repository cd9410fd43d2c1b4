"""One reconciliation round of a WorkerPool: gather, decide, apply, record.

Free of kopf so tests drive it directly with FakeKube and a fake queue reader;
handlers.py runs it in a loop and turns RetryLater into kopf.TemporaryError.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from kubetaskqueue_operator import conditions as cond
from kubetaskqueue_operator.kube import DELETION_COST, KubeApi, KubeError, ObjectRef, Pod
from kubetaskqueue_operator.metrics import NullMetrics, OperatorMetrics
from kubetaskqueue_operator.policy import Observation, Recommendation, decide, deletion_costs
from kubetaskqueue_operator.queue import LossReleaser, QueueReader, QueueReadError, QueueSnapshot
from kubetaskqueue_operator.recovery import PodView, busy_by_pod, find_losses, view
from kubetaskqueue_operator.spec import DEFAULT_POLL_S, GROUP, KIND, VERSION, SpecError, parse_spec

log = logging.getLogger(__name__)


REDIS_UNREACHABLE = "RedisUnreachable"


class RetryLater(Exception):
    """This round failed for a reason that may pass; a condition says why."""

    def __init__(self, message: str, delay_s: float, reason: str = "") -> None:
        super().__init__(message)
        self.delay_s = delay_s
        self.reason = reason  # the condition's reason, e.g. REDIS_UNREACHABLE


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Deps:
    """What a round needs from the outside world; tests pass fakes."""

    kube: KubeApi
    read_queue: QueueReader
    release_lost: LossReleaser
    clock: Callable[[], float] = time.monotonic  # for the stabilization window
    wall: Callable[[], dt.datetime] = _utcnow  # for timestamps in status
    metrics: OperatorMetrics = field(default_factory=NullMetrics)


@dataclass
class PoolMemory:
    """Per-WorkerPool state kept between rounds (in kopf's per-object memo)."""

    history: tuple[Recommendation, ...] = ()
    conditions: list[dict[str, Any]] | None = None
    last_status: dict[str, Any] | None = None
    last_scale_time: str | None = None
    pods: dict[str, PodView] | None = None  # the target's pods last round (None: first round)
    owners: Mapping[str, int] = field(default_factory=dict)  # lease owners last round


def _stamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class _Round:
    def __init__(self, deps: Deps, pool: ObjectRef, body: Mapping[str, Any], mem: PoolMemory):
        self.deps, self.pool, self.mem = deps, pool, mem
        self.now = _stamp(deps.wall())
        status = body.get("status") or {}
        self.conditions: list[dict[str, Any]] = list(
            mem.conditions if mem.conditions is not None else status.get("conditions") or []
        )
        if mem.last_scale_time is None:
            mem.last_scale_time = status.get("lastScaleTime")
        self.status: dict[str, Any] = {
            "observedGeneration": (body.get("metadata") or {}).get("generation")
        }
        self.poll_s = DEFAULT_POLL_S

    def condition(self, type_: str, ok: bool | None, reason: str, message: str) -> None:
        self.conditions = cond.set_condition(self.conditions, type_, ok, reason, message, self.now)

    def write_status(self) -> None:
        self.status["conditions"] = self.conditions
        self.mem.conditions = self.conditions
        if self.status == self.mem.last_status:
            return  # nothing changed: spare the API server a write every poll
        self.deps.kube.patch_pool_status(self.pool.namespace, self.pool.name, self.status)
        self.mem.last_status = dict(self.status)

    def fail(self, reason: str, message: str, *, redis_ok: bool | None = None) -> NoReturn:
        self.condition(cond.READY, False, reason, message)
        if redis_ok is not None:
            self.condition(cond.REDIS_REACHABLE, redis_ok, reason, message)
        self.condition(cond.SCALING, False, reason, "not scaling: " + message)
        try:
            self.write_status()
        except KubeError as exc:
            log.warning("WorkerPool %s: could not write status: %s", self.pool.name, exc)
        raise RetryLater(message, self.poll_s, reason)


def reconcile(deps: Deps, pool: ObjectRef, body: Mapping[str, Any], mem: PoolMemory) -> float:
    """Run one round; return seconds until the next. Raises RetryLater on failure."""
    r = _Round(deps, pool, body, mem)
    ns = pool.namespace
    try:
        spec = parse_spec(body.get("spec") or {})
    except SpecError as exc:
        r.fail("InvalidSpec", str(exc))
    r.poll_s = spec.poll_s

    try:
        secret = spec.redis_url_secret
        url = deps.kube.read_secret_value(ns, secret.name, secret.key)
    except KubeError as exc:
        r.fail("RedisSecretUnavailable", str(exc))
    try:
        snap = deps.read_queue(url, spec.key_prefix, spec.topics)
    except QueueReadError as exc:
        r.fail(REDIS_UNREACHABLE, str(exc), redis_ok=False)
    r.condition(cond.REDIS_REACHABLE, True, "Read", f"read {snap.managers} live managers")

    try:
        scale = deps.kube.get_scale(ns, spec.target)
        listed = deps.kube.list_pods(ns, scale.selector)
    except KubeError as exc:
        r.fail("TargetUnavailable", str(exc))
    _release_lost_workers(deps, r, url, spec.key_prefix, snap, listed)
    pods = [p for p in listed if not p.terminating]
    busy = busy_by_pod(snap.owners, [p.name for p in pods])
    obs = Observation(
        input=snap.input,
        scheduled=snap.scheduled,
        scheduled_due=snap.scheduled_due,
        work=snap.work,
        dead=snap.dead,
        busy_pods=len(busy),
        paused_ready=snap.paused_ready,
        rate_limited=snap.rate_limited,
    )
    decision = decide(spec.policy, obs, scale.replicas, mem.history, deps.clock())
    mem.history = decision.history

    if decision.desired != scale.replicas:
        try:
            if decision.desired < scale.replicas:
                _protect_busy_pods(deps.kube, ns, pods, busy)
            deps.kube.set_replicas(ns, spec.target, decision.desired)
        except KubeError as exc:
            r.fail("ScaleFailed", str(exc))
        _announce(deps, r, spec.target, scale.replicas, decision.desired, decision.message)

    deps.metrics.replicas(f"{ns}/{pool.name}", decision.desired, scale.current,
                          spec.policy.max_replicas)
    # Scaling: this round changed the size, or the pods have not caught up with it yet.
    scaling = decision.desired != scale.replicas or decision.desired != scale.current
    r.condition(cond.SCALING, scaling, decision.reason, decision.message)
    r.condition(cond.READY, True, "Reconciled", f"{spec.target} at {decision.desired} replicas")
    r.status.update(_observed(snap, obs, scale.current, decision.desired, decision.recommended))
    r.status["lastScaleTime"] = mem.last_scale_time
    try:
        r.write_status()
    except KubeError as exc:
        raise RetryLater(str(exc), spec.poll_s) from exc
    return spec.poll_s


def _release_lost_workers(
    deps: Deps, r: _Round, url: str, prefix: str, snap: QueueSnapshot, listed: Sequence[Pod]
) -> None:
    """Pods whose worker died since the last round: release their leases now, not after
    the lease TTL (a failed release is only logged: the leases still expire)."""
    mem = r.mem
    if mem.pods is not None:
        for loss in find_losses(mem.pods, listed, snap.owners, mem.owners):
            try:
                lost, dead = deps.release_lost(
                    url, prefix, snap.topics, list(loss.managers), loss.reason
                )
            except QueueReadError as exc:
                log.warning("WorkerPool %s: %s; its leases will expire instead: %s",
                            r.pool.name, loss.reason, exc)
                continue
            if lost or dead:
                _record(deps, r, "Warning", "WorkerLost", f"{loss.reason}: released its "
                        f"{lost + dead} task(s) at once ({lost} requeued, {dead} poison to dead)")
    mem.pods = view(listed)
    mem.owners = dict(snap.owners)


def _record(deps: Deps, r: _Round, type_: str, reason: str, message: str) -> None:
    """Log the message and post it as an Event on the pool (best effort: what it says
    has happened already)."""
    level = logging.WARNING if type_ == "Warning" else logging.INFO
    log.log(level, "WorkerPool %s/%s: %s", r.pool.namespace, r.pool.name, message)
    try:
        deps.kube.post_event(r.pool, type_, reason, message)
    except KubeError as exc:
        log.warning("WorkerPool %s: could not post Event: %s", r.pool.name, exc)


def _protect_busy_pods(
    kube: KubeApi, ns: str, pods: Sequence[Pod], busy: Mapping[str, int]
) -> None:
    """Set pod-deletion-cost so the ReplicaSet removes idle pods first (only changed ones)."""
    by_name = {p.name: p for p in pods}
    for name, cost in deletion_costs(by_name, busy).items():
        if by_name[name].annotations.get(DELETION_COST) != str(cost):
            kube.annotate_pod(ns, name, {DELETION_COST: str(cost)})


def _announce(deps: Deps, r: _Round, target: Any, old: int, new: int, why: str) -> None:
    direction = "up" if new > old else "down"
    r.mem.last_scale_time = r.now
    deps.metrics.scaled(f"{r.pool.namespace}/{r.pool.name}", direction)
    reason = "ScaledUp" if new > old else "ScaledDown"
    _record(deps, r, "Normal", reason, f"Scaled {target} from {old} to {new}: {why}")


def _observed(
    snap: QueueSnapshot, obs: Observation, current: int, desired: int, recommended: int
) -> dict[str, Any]:
    return {
        "queue": {
            "input": snap.input,
            "scheduled": snap.scheduled,
            "scheduledDue": snap.scheduled_due,
            "work": snap.work,
            "dead": snap.dead,
        },
        "backlog": obs.backlog,
        "busyPods": obs.busy_pods,
        "managers": snap.managers,
        "currentReplicas": current,
        "desiredReplicas": desired,
        "recommendedReplicas": recommended,
    }


def pool_ref(body: Mapping[str, Any]) -> ObjectRef:
    meta = body.get("metadata") or {}
    return ObjectRef(
        api_version=f"{GROUP}/{VERSION}",
        kind=KIND,
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
    )
