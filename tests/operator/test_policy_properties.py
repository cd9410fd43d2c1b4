"""Property tests of the scaling decision: invariants that must hold for any input."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from kubetaskqueue_operator.policy import (
    Observation,
    RateLimited,
    Recommendation,
    ScalePolicy,
    decide,
)

counts = st.integers(min_value=0, max_value=5_000)


@st.composite
def policies(draw: st.DrawFn) -> ScalePolicy:
    lo = draw(st.integers(0, 20))
    hi = draw(st.integers(lo, 60))
    return ScalePolicy(
        target_tasks_per_replica=draw(st.integers(1, 50)),
        min_replicas=lo,
        max_replicas=hi,
        activation_tasks=draw(st.integers(0, 100)),
        stabilization_s=draw(st.sampled_from([0, 15, 60, 300])),
        max_step=draw(st.integers(1, 20)),
    )


limited_topics = st.builds(
    RateLimited,
    backlog=counts,
    rate_per_s=st.floats(0.001, 500),
    mean_run_s=st.floats(0, 600),
    slots_per_pod=st.integers(1, 64),
)


@st.composite
def observations(draw: st.DrawFn) -> Observation:
    """Queue totals; the backlog of the rate-limited topics among them is in input."""
    limited = tuple(draw(st.lists(limited_topics, max_size=3)))
    return Observation(
        input=draw(counts) + sum(t.backlog for t in limited),
        scheduled=draw(counts),
        scheduled_due=draw(counts),
        work=draw(counts),
        dead=draw(counts),
        busy_pods=draw(st.integers(0, 80)),
        rate_limited=limited,
    )


def busy_floor(obs: Observation, current: int) -> int:
    return max(1, min(obs.busy_pods, current)) if obs.work else 0

histories = st.lists(
    st.builds(Recommendation, at=st.floats(0, 1000), replicas=st.integers(0, 80)), max_size=8
).map(tuple)
currents = st.integers(0, 80)


@settings(max_examples=300)
@given(policies(), observations(), currents, histories)
def test_never_outside_min_max(p: ScalePolicy, obs: Observation, cur: int, hist) -> None:
    d = decide(p, obs, cur, hist, 1000.0)
    assert p.min_replicas <= d.desired <= p.max_replicas


@settings(max_examples=300)
@given(policies(), observations(), currents, histories)
def test_never_zero_while_tasks_in_work(p: ScalePolicy, obs: Observation, cur: int, hist) -> None:
    d = decide(p, obs, cur, hist, 1000.0)
    if obs.work > 0 and p.max_replicas > 0:
        assert d.desired >= 1
        # ... and never fewer pods than hold leases (as far as max allows).
        assert d.desired >= min(obs.busy_pods, cur, p.max_replicas)


@settings(max_examples=300)
@given(
    policies(),
    observations(),
    currents,
    histories,
    st.sampled_from(["input", "scheduled_due", "work"]),
    st.integers(1, 1000),
)
def test_monotone_in_backlog(
    p: ScalePolicy, obs: Observation, cur: int, hist, field: str, extra: int
) -> None:
    more = Observation(**{**obs.__dict__, field: getattr(obs, field) + extra})
    assert decide(p, more, cur, hist, 1000.0).desired >= decide(p, obs, cur, hist, 1000.0).desired


@settings(max_examples=200)
@given(
    policies(),
    currents,
    st.lists(st.tuples(st.floats(0.5, 120), observations()), min_size=2, max_size=25),
)
def test_no_scale_down_within_window_after_scale_up(p: ScalePolicy, start: int, steps) -> None:
    """Replay a sequence of polls; after any increase, nothing lower within the window."""
    now, current = 0.0, p.clamp(start)
    hist: tuple[Recommendation, ...] = ()
    ups: list[tuple[float, int]] = []  # (time, size reached) of each increase
    for gap, obs in steps:
        now += gap
        d = decide(p, obs, current, hist, now)
        for t_up, size in ups:
            if now - t_up < p.stabilization_s:
                assert d.desired >= size, (t_up, size, now, d)
        if d.desired > current:
            ups.append((now, d.desired))
        current, hist = d.desired, d.history


@settings(max_examples=200)
@given(policies(), observations(), currents, histories)
def test_up_by_at_most_max_step_unless_below_min(
    p: ScalePolicy, obs: Observation, cur: int, hist
) -> None:
    d = decide(p, obs, cur, hist, 1000.0)
    assert d.desired <= max(cur + p.max_step, p.min_replicas)


@settings(max_examples=200)
@given(policies(), observations(), currents, histories)
def test_history_only_keeps_the_window(p: ScalePolicy, obs: Observation, cur: int, hist) -> None:
    d = decide(p, obs, cur, hist, 1000.0)
    # Only recommendations inside (now - window, now]; this round's is always kept.
    assert all(1000.0 - p.stabilization_s < r.at <= 1000.0 or r.at == 1000.0 for r in d.history)
    assert d.history[-1] == Recommendation(1000.0, d.recommended)


@settings(max_examples=200)
@given(policies(), st.lists(limited_topics, min_size=1, max_size=3), st.integers(0, 80),
       st.integers(0, 80), currents, histories)
def test_a_rate_limited_backlog_never_scales_past_its_limit_pods(
    p: ScalePolicy, limited: list[RateLimited], work: int, busy: int, cur: int, hist
) -> None:
    """All the backlog is in rate-limited topics: at most ceil(rate x mean / slots) pods
    each (or the busy pods that hold leases, or minReplicas), whatever the backlog."""
    backlog = sum(t.backlog for t in limited)
    work = min(work, backlog)
    obs = Observation(input=backlog - work, work=work, busy_pods=busy,
                      rate_limited=tuple(limited))
    d = decide(p, obs, cur, hist, 1000.0)
    bound = p.clamp(max(sum(t.pods for t in limited), busy_floor(obs, cur)))
    assert d.recommended <= bound
    if d.desired > cur:
        assert d.desired <= bound


@settings(max_examples=200)
@given(policies(), observations(), currents, histories, st.integers(1, 100_000))
def test_backlog_a_limit_makes_wait_changes_nothing(
    p: ScalePolicy, obs: Observation, cur: int, hist, extra: int
) -> None:
    """More tasks in a topic whose limit pods are already fully loaded (and past
    activationTasks): the same decision."""
    if not obs.rate_limited:
        return
    first, *rest = obs.rate_limited
    loaded = max(p.target_tasks_per_replica * first.pods, p.activation_tasks)
    full = RateLimited(max(first.backlog, loaded), first.rate_per_s, first.mean_run_s,
                       first.slots_per_pod)
    base = Observation(**{**obs.__dict__, "input": obs.input + full.backlog - first.backlog,
                          "rate_limited": (full, *rest)})
    more = Observation(**{**base.__dict__, "input": base.input + extra,
                          "rate_limited": (RateLimited(full.backlog + extra, full.rate_per_s,
                                                       full.mean_run_s, full.slots_per_pod),
                                           *rest)})
    before, after = decide(p, base, cur, hist, 1000.0), decide(p, more, cur, hist, 1000.0)
    assert (after.desired, after.reason, after.recommended, after.history) == (
        before.desired, before.reason, before.recommended, before.history)


@settings(max_examples=200)
@given(policies(), observations(), currents, histories)
def test_a_rate_limit_never_asks_for_more_pods(p: ScalePolicy, obs: Observation, cur: int,
                                               hist) -> None:
    unlimited = Observation(**{**obs.__dict__, "rate_limited": ()})
    assert decide(p, obs, cur, hist, 1000.0).desired <= decide(
        p, unlimited, cur, hist, 1000.0).desired
