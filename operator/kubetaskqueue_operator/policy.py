"""The scaling decision: a pure function from what was observed to a replica count.

No kopf, no Kubernetes, no Redis here: every input is a value, so the whole
behaviour is covered by unit and property tests (tests/operator/test_policy*.py).

    need      = ceil((input + scheduled_due + work) / targetTasksPerReplica)
                a rate-limited topic's backlog counts up to limit pods x target, where
                limit pods = ceil(rate x mean run time / slots per pod): more pods
                could not start its tasks any sooner
                (a paused topic's input and scheduled_due are not counted: nobody claims them)
    need      = max(need, 1, busy pods)      when any task is in work
    need      = 0                            from 0 replicas while backlog < activationTasks
    recommend = clamp(need, min, max)
    up:   min(recommend, current + maxStep)
    down: max of the recommendations inside the stabilization window (HPA v2 style)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# Reasons are CamelCase because they go straight into status conditions and Events.
SCALE_UP = "ScaleUp"
SCALE_UP_LIMITED = "ScaleUpLimited"  # capped by scaleUp.maxStep
SCALE_DOWN = "ScaleDown"
SCALE_DOWN_STABILIZED = "ScaleDownStabilized"  # lower recommendation held back by the window
BELOW_ACTIVATION = "BelowActivation"  # at 0 replicas and backlog < activationTasks
OUT_OF_BOUNDS = "OutOfBounds"  # current replicas outside [min, max]; moved to the bound
STEADY = "Steady"


@dataclass(frozen=True)
class ScalePolicy:
    """The scaling part of a WorkerPool spec (defaults match the CRD)."""

    target_tasks_per_replica: int = 10
    min_replicas: int = 0
    max_replicas: int = 10
    activation_tasks: int = 1
    stabilization_s: float = 300.0
    max_step: int = 10

    def __post_init__(self) -> None:
        # The CRD schema rejects these too; this guards direct Python use.
        if self.target_tasks_per_replica < 1:
            raise ValueError("targetTasksPerReplica must be >= 1")
        if self.min_replicas < 0 or self.max_replicas < 0:
            raise ValueError("minReplicas and maxReplicas must be >= 0")
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"minReplicas ({self.min_replicas}) must be <= maxReplicas ({self.max_replicas})"
            )
        if self.activation_tasks < 0 or self.stabilization_s < 0:
            raise ValueError("activationTasks and scaleDown.stabilizationSeconds must be >= 0")
        if self.max_step < 1:
            raise ValueError("scaleUp.maxStep must be >= 1")

    def clamp(self, replicas: int) -> int:
        return max(self.min_replicas, min(self.max_replicas, replicas))


@dataclass(frozen=True)
class RateLimited:
    """A topic of the pool under a rate limit, whose backlog is part of Observation's."""

    backlog: int  # its input + scheduled_due + work
    rate_per_s: float  # starts the limit lets through per second
    mean_run_s: float  # mean run time of its tasks
    slots_per_pod: int  # task slots of one worker pod

    @property
    def pods(self) -> int:
        """Pods that keep the limit busy: ceil(rate x mean run time / slots), at least 1."""
        busy_slots = self.rate_per_s * self.mean_run_s / max(1, self.slots_per_pod)
        return max(1, math.ceil(round(busy_slots, 9)))  # 10 x 0.3 / 3 is not 1.0000000000000002


@dataclass(frozen=True)
class Observation:
    """Queue counts summed over the pool's topics, and how many target pods are busy."""

    input: int = 0
    scheduled: int = 0
    scheduled_due: int = 0  # scheduled tasks already due: ready, not yet promoted
    work: int = 0
    dead: int = 0
    busy_pods: int = 0  # target pods whose manager holds at least one task
    paused_ready: int = 0  # ready tasks of paused topics: left out of input and backlog
    rate_limited: tuple[RateLimited, ...] = ()  # the rate-limited topics among them

    @property
    def backlog(self) -> int:
        return self.input + self.scheduled_due + self.work

    def counted_backlog(self, per_replica: int) -> int:
        """The backlog more pods could work off: a rate-limited topic's tasks beyond what
        its limit pods carry wait for tokens, not for pods."""
        waiting = sum(max(0, t.backlog - t.pods * per_replica) for t in self.rate_limited)
        return max(0, self.backlog - waiting)


@dataclass(frozen=True)
class Recommendation:
    at: float  # the caller's clock, seconds (monotonic is fine)
    replicas: int


@dataclass(frozen=True)
class Decision:
    desired: int
    reason: str
    message: str
    recommended: int  # this round's recommendation before stabilization and maxStep
    history: tuple[Recommendation, ...]  # pass back in on the next call


def recommend(policy: ScalePolicy, obs: Observation, current: int) -> tuple[int, str]:
    """The replica count this observation alone asks for, clamped to [min, max]."""
    backlog = obs.backlog
    counted = obs.counted_backlog(policy.target_tasks_per_replica)
    need = math.ceil(counted / policy.target_tasks_per_replica)
    note = f"backlog {backlog} / {policy.target_tasks_per_replica} per replica = {need}"
    if counted < backlog:
        limits = " + ".join(str(t.pods) for t in obs.rate_limited)
        note = (f"backlog {backlog}, {backlog - counted} of it waiting for rate limits "
                f"(at most {limits} pods), {counted} / {policy.target_tasks_per_replica} "
                f"per replica = {need}")
    if obs.paused_ready:
        note += f" ({obs.paused_ready} ready in paused topics not counted)"
    if obs.work > 0:
        # Tasks in flight hold leases: keep at least one pod, and do not ask for
        # fewer pods than are busy (an idle pod should go first, not a busy one).
        floor = max(1, min(obs.busy_pods, current))
        if floor > need:
            need = floor
            note += f"; {obs.work} in work on {min(obs.busy_pods, current)} busy pods -> {need}"
    if current == 0 and obs.work == 0 and backlog < policy.activation_tasks:
        need = 0
        note = f"backlog {backlog} below activationTasks {policy.activation_tasks}"
    clamped = policy.clamp(need)
    if clamped != need:
        note += f"; clamped to [{policy.min_replicas}, {policy.max_replicas}] -> {clamped}"
    return clamped, note


def decide(
    policy: ScalePolicy,
    obs: Observation,
    current: int,
    history: Sequence[Recommendation],
    now: float,
) -> Decision:
    """Decide the replica count; ``history`` is the previous Decision's history."""
    rec, note = recommend(policy, obs, current)
    window_start = now - policy.stabilization_s
    kept = [r for r in history if window_start < r.at <= now]
    if not history:
        # No memory (first round, or operator restart): count the current size as a
        # recommendation so a restart never scales down before a full window.
        kept.append(Recommendation(now, policy.clamp(current)))
    kept.append(Recommendation(now, rec))
    # Recommendations made under an older spec are re-clamped to the current one.
    down_to = policy.clamp(max(r.replicas for r in kept))

    if rec > current:
        desired = min(rec, current + policy.max_step)
        reason = SCALE_UP if desired == rec else SCALE_UP_LIMITED
        if reason == SCALE_UP_LIMITED:
            note += f"; up by at most maxStep {policy.max_step}"
    elif down_to < current:
        desired = down_to
        reason = SCALE_DOWN
        if down_to > rec:
            note += f"; highest recommendation in the last {policy.stabilization_s:g}s"
            note += f" is {down_to}"
    else:
        desired = current
        if rec < current:
            reason = SCALE_DOWN_STABILIZED
            note += f"; holding {current} for the {policy.stabilization_s:g}s window"
        elif rec == 0 and current == 0 and obs.backlog > 0:
            reason = BELOW_ACTIVATION
        else:
            reason = STEADY

    bounded = policy.clamp(desired)
    if bounded != desired:
        desired, reason = bounded, OUT_OF_BOUNDS
        note += f"; moved into [{policy.min_replicas}, {policy.max_replicas}]"
    return Decision(desired, reason, note, rec, tuple(kept))


def deletion_costs(pods: Iterable[str], busy_by_pod: Mapping[str, int]) -> dict[str, int]:
    """``controller.kubernetes.io/pod-deletion-cost`` per pod: its in-flight task count.

    The ReplicaSet deletes pods with the lowest cost first, so idle pods (0) go
    before busy ones, and among busy pods the one with the least work goes first.
    """
    max_cost = 2**31 - 1  # the annotation is an int32
    return {pod: min(max(busy_by_pod.get(pod, 0), 0), max_cost) for pod in pods}
