"""Unit tests of the pure scaling decision (operator/kubetaskqueue_operator/policy.py)."""

from __future__ import annotations

import pytest
from kubetaskqueue_operator.policy import (
    BELOW_ACTIVATION,
    OUT_OF_BOUNDS,
    SCALE_DOWN,
    SCALE_DOWN_STABILIZED,
    SCALE_UP,
    SCALE_UP_LIMITED,
    STEADY,
    Observation,
    RateLimited,
    Recommendation,
    ScalePolicy,
    decide,
    deletion_costs,
)

POLICY = ScalePolicy(
    target_tasks_per_replica=10,
    min_replicas=0,
    max_replicas=20,
    activation_tasks=5,
    stabilization_s=300,
    max_step=4,
)


def run(
    obs: Observation,
    current: int,
    history: tuple[Recommendation, ...] = (),
    now: float = 1000.0,
    policy: ScalePolicy = POLICY,
):
    return decide(policy, obs, current, history, now)


def test_worked_example_from_docs() -> None:
    # 23 ready + 4 due + 5 in work = 32 tasks; 10 per replica -> ceil(3.2) = 4.
    d = run(Observation(input=23, scheduled=50, scheduled_due=4, work=5), current=2)
    assert (d.recommended, d.desired, d.reason) == (4, 4, SCALE_UP)


def test_a_rate_limited_topic_needs_at_most_its_limit_pods() -> None:
    # 10/s x 2 s mean run time / 8 slots = 2.5 -> 3 pods, though 10,000 tasks wait.
    api = RateLimited(backlog=10_000, rate_per_s=10.0, mean_run_s=2.0, slots_per_pod=8)
    assert api.pods == 3
    d = run(Observation(input=10_000, rate_limited=(api,)), current=3)
    assert (d.recommended, d.desired, d.reason) == (3, 3, STEADY)
    assert "9970 of it waiting for rate limits (at most 3 pods)" in d.message
    # The pool's unlimited topics still count in full: (50 + 3 x 10) / 10 = 8.
    d = run(Observation(input=10_050, rate_limited=(api,)), current=3)
    assert (d.recommended, d.desired) == (8, 7)
    # A short task and a slow rate still need one pod.
    slow = RateLimited(backlog=5, rate_per_s=0.01, mean_run_s=0.0, slots_per_pod=4)
    assert run(Observation(input=5, rate_limited=(slow,)), current=0).desired == 1


def test_not_yet_due_scheduled_tasks_do_not_count() -> None:
    d = run(Observation(input=0, scheduled=1000, scheduled_due=0), current=0)
    assert d.desired == 0


def test_scale_up_limited_by_max_step() -> None:
    d = run(Observation(input=200), current=1)
    assert d.recommended == 20
    assert (d.desired, d.reason) == (5, SCALE_UP_LIMITED)


def test_clamped_to_max() -> None:
    d = run(Observation(input=10_000), current=20)
    assert (d.recommended, d.desired) == (20, 20)


def test_min_replicas_kept_when_idle() -> None:
    policy = ScalePolicy(min_replicas=2, max_replicas=5, stabilization_s=0)
    d = run(Observation(), current=3, policy=policy, history=(Recommendation(0, 3),))
    assert d.desired == 2


def test_activation_gate_from_zero() -> None:
    below = run(Observation(input=4), current=0)
    assert (below.desired, below.reason) == (0, BELOW_ACTIVATION)
    at = run(Observation(input=5), current=0)
    assert (at.desired, at.reason) == (1, SCALE_UP)


def test_activation_gate_only_applies_at_zero() -> None:
    # With pods running, a small backlog keeps one pod busy draining it.
    d = run(Observation(input=2), current=1, history=(Recommendation(999, 1),))
    assert (d.desired, d.reason) == (1, STEADY)


def test_work_in_flight_forces_a_pod_even_below_activation() -> None:
    d = run(Observation(work=1), current=0)
    assert d.desired == 1


def test_busy_pods_are_not_scaled_away() -> None:
    # 6 tasks spread over 6 pods: ceil(6/10) = 1, but 6 pods hold leases.
    d = run(Observation(work=6, busy_pods=6), current=8, history=(Recommendation(0, 8),))
    assert d.recommended == 6
    assert d.desired == 6


def test_scale_down_waits_for_window() -> None:
    hist = (Recommendation(900.0, 8),)
    held = run(Observation(input=10), current=8, history=hist, now=1000.0)
    assert (held.desired, held.reason) == (8, SCALE_DOWN_STABILIZED)
    later = run(Observation(input=10), current=8, history=held.history, now=1201.0)
    assert (later.desired, later.reason) == (1, SCALE_DOWN)


def test_scale_down_goes_to_highest_recommendation_in_window() -> None:
    hist = (Recommendation(100.0, 8), Recommendation(800.0, 5), Recommendation(950.0, 3))
    d = run(Observation(input=10), current=8, history=hist, now=1000.0)
    # 100.0 is outside (700, 1000]; the highest inside is 5.
    assert (d.desired, d.reason) == (5, SCALE_DOWN)
    assert [r.at for r in d.history] == [800.0, 950.0, 1000.0]


def test_restart_without_history_does_not_scale_down_at_once() -> None:
    d = run(Observation(), current=6, history=())
    assert (d.desired, d.reason) == (6, SCALE_DOWN_STABILIZED)
    d2 = run(Observation(), current=6, history=d.history, now=1000.0 + 301)
    assert d2.desired == 0


def test_max_lowered_below_current_applies_at_once() -> None:
    policy = ScalePolicy(max_replicas=3)
    d = run(Observation(input=100), current=8, history=(Recommendation(999, 8),), policy=policy)
    assert d.desired == 3


@pytest.mark.parametrize("backlog", [0, 200])
def test_min_raised_above_current_ignores_max_step(backlog: int) -> None:
    policy = ScalePolicy(min_replicas=10, max_replicas=20, max_step=2)
    d = run(Observation(input=backlog), current=1, policy=policy)
    assert (d.desired, d.reason) == (10, OUT_OF_BOUNDS)


def test_max_zero_pauses_the_pool() -> None:
    policy = ScalePolicy(min_replicas=0, max_replicas=0)
    d = run(Observation(input=100, work=3, busy_pods=2), current=2, policy=policy)
    assert d.desired == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"target_tasks_per_replica": 0},
        {"min_replicas": -1},
        {"min_replicas": 3, "max_replicas": 2},
        {"max_step": 0},
        {"stabilization_s": -1},
    ],
)
def test_policy_rejects_bad_values(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        ScalePolicy(**kwargs)


def test_deletion_costs_follow_in_flight_tasks() -> None:
    costs = deletion_costs(["a", "b", "c"], {"a": 3, "c": 1, "other": 9})
    assert costs == {"a": 3, "b": 0, "c": 1}


def test_docs_worked_example_timeline() -> None:
    """The table in docs/operator.md, poll by poll (its pool is POLICY)."""
    policy = POLICY

    def queue(t: int) -> Observation:
        if t < 15:
            return Observation(input=3)
        if t < 30:
            return Observation(input=40, scheduled=7, scheduled_due=2)
        if t < 45:
            return Observation(input=35, work=10, busy_pods=4)
        if t < 360:
            return Observation(work=6, busy_pods=3)
        return Observation()

    current, history, rows, last_reason = 0, (), [], None
    for t in range(0, 700, 15):
        d = decide(policy, queue(t), current, history, t)
        if d.desired != current or d.reason != last_reason:
            rows.append((t, current, d.desired, d.reason))
        current, history, last_reason = d.desired, d.history, d.reason
    assert rows == [
        (0, 0, 0, BELOW_ACTIVATION),
        (15, 0, 4, SCALE_UP_LIMITED),
        (30, 4, 5, SCALE_UP),
        (45, 5, 5, SCALE_DOWN_STABILIZED),
        (330, 5, 3, SCALE_DOWN),
        (345, 3, 3, STEADY),
        (360, 3, 3, SCALE_DOWN_STABILIZED),
        (645, 3, 0, SCALE_DOWN),
        (660, 0, 0, STEADY),
    ]
