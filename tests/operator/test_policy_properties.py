"""Property tests of the scaling decision: invariants that must hold for any input."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from kubetaskqueue_operator.policy import Observation, Recommendation, ScalePolicy, decide

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


observations = st.builds(
    Observation,
    input=counts,
    scheduled=counts,
    scheduled_due=counts,
    work=counts,
    dead=counts,
    busy_pods=st.integers(0, 80),
)
histories = st.lists(
    st.builds(Recommendation, at=st.floats(0, 1000), replicas=st.integers(0, 80)), max_size=8
).map(tuple)
currents = st.integers(0, 80)


@settings(max_examples=300)
@given(policies(), observations, currents, histories)
def test_never_outside_min_max(p: ScalePolicy, obs: Observation, cur: int, hist) -> None:
    d = decide(p, obs, cur, hist, 1000.0)
    assert p.min_replicas <= d.desired <= p.max_replicas


@settings(max_examples=300)
@given(policies(), observations, currents, histories)
def test_never_zero_while_tasks_in_work(p: ScalePolicy, obs: Observation, cur: int, hist) -> None:
    d = decide(p, obs, cur, hist, 1000.0)
    if obs.work > 0 and p.max_replicas > 0:
        assert d.desired >= 1
        # ... and never fewer pods than hold leases (as far as max allows).
        assert d.desired >= min(obs.busy_pods, cur, p.max_replicas)


@settings(max_examples=300)
@given(
    policies(),
    observations,
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
    st.lists(st.tuples(st.floats(0.5, 120), observations), min_size=2, max_size=25),
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
@given(policies(), observations, currents, histories)
def test_up_by_at_most_max_step_unless_below_min(
    p: ScalePolicy, obs: Observation, cur: int, hist
) -> None:
    d = decide(p, obs, cur, hist, 1000.0)
    assert d.desired <= max(cur + p.max_step, p.min_replicas)


@settings(max_examples=200)
@given(policies(), observations, currents, histories)
def test_history_only_keeps_the_window(p: ScalePolicy, obs: Observation, cur: int, hist) -> None:
    d = decide(p, obs, cur, hist, 1000.0)
    # Only recommendations inside (now - window, now]; this round's is always kept.
    assert all(1000.0 - p.stabilization_s < r.at <= 1000.0 or r.at == 1000.0 for r in d.history)
    assert d.history[-1] == Recommendation(1000.0, d.recommended)
