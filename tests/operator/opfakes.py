"""Fakes for operator tests: an in-memory cluster, a fake queue reader, fake clocks."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from kubetaskqueue_operator.kube import FakeKube, FakePod, FakeTarget
from kubetaskqueue_operator.metrics import RecordingMetrics
from kubetaskqueue_operator.queue import QueueReadError, QueueSnapshot
from kubetaskqueue_operator.reconcile import Deps, PoolMemory

NS = "jobs"
REDIS_URL = "redis://:s3cret@redis:6379/0"


@dataclass
class FakeQueue:
    """A QueueReader returning whatever the test sets; records its calls."""

    snapshot: QueueSnapshot = field(default_factory=QueueSnapshot)
    error: str | None = None
    calls: list[tuple[str, str, tuple[str, ...] | None]] = field(default_factory=list)

    released: list[tuple[tuple[str, ...], list[str], str]] = field(default_factory=list)

    def __call__(self, url: str, prefix: str, topics: tuple[str, ...] | None) -> QueueSnapshot:
        self.calls.append((url, prefix, topics))
        if self.error:
            raise QueueReadError(self.error)
        return self.snapshot

    def release_lost(self, url: str, prefix: str, topics: tuple[str, ...], managers: list[str],
                     reason: str) -> tuple[int, int]:
        """Releases what the snapshot says these managers hold (all requeued)."""
        if self.error:
            raise QueueReadError(self.error)
        self.released.append((topics, managers, reason))
        return sum(self.snapshot.owners.get(m, 0) for m in managers), 0


@dataclass
class Clock:
    t: float = 1000.0

    def __call__(self) -> float:
        return self.t

    def wall(self) -> dt.datetime:
        return dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=self.t)


@dataclass
class World:
    kube: FakeKube
    queue: FakeQueue
    clock: Clock
    metrics: RecordingMetrics
    deps: Deps
    mem: PoolMemory
    body: dict[str, Any]

    @property
    def replicas(self) -> int:
        return self.kube.targets[(NS, "Deployment", "workers")].replicas

    @property
    def status(self) -> dict[str, Any]:
        return self.kube.statuses[(NS, "pool")]

    def condition(self, type_: str) -> dict[str, Any]:
        return next(c for c in self.status["conditions"] if c["type"] == type_)

    def add_pods(self, *names: str) -> None:
        for name in names:
            self.kube.pods[(NS, name)] = FakePod(labels={"app": "workers"})


def pool_body(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "workers"},
        "redis": {"urlSecretRef": {"name": "redis", "key": "url"}},
        "targetTasksPerReplica": 10,
        "minReplicas": 0,
        "maxReplicas": 10,
        "activationTasks": 1,
        "scaleDown": {"stabilizationSeconds": 300},
        "scaleUp": {"maxStep": 4},
        "pollSeconds": 15,
    }
    base.update(spec)
    return {
        "apiVersion": "kubetaskqueue.io/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"namespace": NS, "name": "pool", "uid": "u-1", "generation": 3},
        "spec": base,
    }


def make_world() -> World:
    kube = FakeKube()
    kube.secrets[(NS, "redis")] = {"url": REDIS_URL}
    kube.targets[(NS, "Deployment", "workers")] = FakeTarget(replicas=1, selector="app=workers")
    queue, clock, metrics = FakeQueue(), Clock(), RecordingMetrics()
    deps = Deps(kube=kube, read_queue=queue, release_lost=queue.release_lost, clock=clock,
                wall=clock.wall, metrics=metrics)
    return World(kube, queue, clock, metrics, deps, PoolMemory(), pool_body())
