"""Lost workers: which pods' managers died since the last round, and why.

Pure (no kopf, no Redis, no Kubernetes client). A worker's leases are renewed
by its heartbeat; when its pod dies they would run out after the lease TTL
(30 s by default). The operator sees the death sooner — the pod is gone, has
failed (evicted), or its worker container restarted (OOMKilled) — and has the
core release those leases at once, as a worker loss with this module's reason.

Which leases: a manager id is ``<pod>-<8 hex>``. A pod that is gone or failed
runs nothing any more, so every lease owned by a manager of that pod is
released. A pod whose container restarted runs a new manager under the same pod
name, so only the managers that held leases in the previous round (the dead
container's) are released, never the new one's. Fencing covers the rest: if a
"dead" worker was in fact alive, its late ack is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kubetaskqueue_operator.kube import Pod

_ENDED = ("Failed", "Succeeded")


def pod_of(manager_id: str) -> str:
    """The pod a manager runs in: its id without the last ``-xxxxxxxx`` part."""
    return manager_id.rsplit("-", 1)[0]


@dataclass(frozen=True)
class PodView:
    """What a round saw of one target pod, for the next round to compare with."""

    restarts: int
    phase: str
    terminating: bool


@dataclass(frozen=True)
class Loss:
    """Leases to release: these managers' on this pod, with the reason Kubernetes gives."""

    pod: str
    managers: tuple[str, ...]
    reason: str


def view(pods: Iterable[Pod]) -> dict[str, PodView]:
    return {p.name: PodView(p.restarts, p.phase, p.terminating) for p in pods}


def _describe(pod: Pod) -> str:
    if pod.reason or pod.message:  # status.reason / message: e.g. Evicted, node pressure
        detail = ": ".join(x for x in (pod.reason, pod.message) if x)
    else:
        detail = pod.last_termination or pod.phase.lower()
    return f"pod {pod.name} {detail}"


def find_losses(
    before: Mapping[str, PodView],
    pods: Iterable[Pod],
    owners: Mapping[str, int],
    owners_before: Mapping[str, int],
) -> list[Loss]:
    """Compare last round's pods with this round's; ``owners``: manager id -> leases held."""
    now = {p.name: p for p in pods}
    losses = []
    for name, seen in before.items():
        pod = now.get(name)
        if pod is None:
            managers = [m for m in owners if pod_of(m) == name]
            how = " (its grace period ran out)" if seen.terminating else ""
            reason = f"pod {name} was deleted{how}"
        elif pod.phase in _ENDED and seen.phase not in _ENDED:
            managers = [m for m in owners if pod_of(m) == name]
            reason = _describe(pod)
        elif pod.restarts > seen.restarts:
            managers = [m for m in owners_before if pod_of(m) == name]
            reason = f"pod {name} {pod.last_termination or 'container restarted'}"
        else:
            continue
        if managers:
            losses.append(Loss(name, tuple(sorted(managers)), reason))
    return losses


def busy_by_pod(owners: Mapping[str, int], pods: Iterable[str]) -> dict[str, int]:
    """Leases held per target pod (several managers may share a pod)."""
    wanted = set(pods)
    busy: dict[str, int] = {}
    for manager, count in owners.items():
        pod = pod_of(manager)
        if pod in wanted and count > 0:
            busy[pod] = busy.get(pod, 0) + count
    return busy
