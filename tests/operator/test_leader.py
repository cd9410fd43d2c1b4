"""Leader election on a Lease: one leader, takeover after expiry, stepping down."""

from __future__ import annotations

import threading

from kubetaskqueue_operator.leader import LeaderElector, LeaseConflict, LeaseRecord, MemoryLeaseApi


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_only_one_candidate_leads_until_the_lease_expires() -> None:
    lease, clock = MemoryLeaseApi(), Clock()
    a = LeaderElector(lease, "a", lease_duration_s=15, clock=clock)
    b = LeaderElector(lease, "b", lease_duration_s=15, clock=clock)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    clock.t += 10
    assert a.try_acquire_or_renew()  # renewal pushes expiry out
    clock.t += 14
    assert not b.try_acquire_or_renew()
    clock.t += 2  # a has not renewed for 16 s > 15 s
    assert b.try_acquire_or_renew()
    assert lease.record is not None
    assert (lease.record.holder, lease.record.transitions) == ("b", 1)
    assert not a.try_acquire_or_renew()


def test_stale_write_loses_the_race() -> None:
    lease, clock = MemoryLeaseApi(), Clock()

    class Racing(MemoryLeaseApi):
        """Another candidate writes between our read and our write."""

        def replace(self, record):  # type: ignore[no-untyped-def]
            raise LeaseConflict("resourceVersion changed")

    LeaderElector(lease, "a", clock=clock).try_acquire_or_renew()
    racing = Racing()
    racing.record = lease.record
    clock.t += 100
    assert not LeaderElector(racing, "b", clock=clock).try_acquire_or_renew()


def test_holder_steps_down_when_it_cannot_renew() -> None:
    clock = Clock()

    class Down(MemoryLeaseApi):
        def read(self):  # type: ignore[no-untyped-def]
            clock.t += 1  # each attempt takes time; the API never answers
            raise ConnectionError("API server unreachable")

    elector = LeaderElector(Down(), "a", renew_deadline_s=5, retry_s=0.001, clock=clock)
    lost, stop = threading.Event(), threading.Event()
    elector.hold(lost, stop)
    assert lost.is_set()


def test_acquire_returns_false_when_stopped() -> None:
    lease, clock = MemoryLeaseApi(), Clock()
    LeaderElector(lease, "a", clock=clock).try_acquire_or_renew()
    stop = threading.Event()
    stop.set()
    assert not LeaderElector(lease, "b", clock=clock).acquire(stop)


def test_release_lets_the_next_candidate_in_at_once() -> None:
    lease, clock = MemoryLeaseApi(), Clock()
    a = LeaderElector(lease, "a", clock=clock)
    b = LeaderElector(lease, "b", clock=clock)
    assert a.try_acquire_or_renew()
    b.release()  # not the holder: no effect
    assert not b.try_acquire_or_renew()
    a.release()
    assert b.try_acquire_or_renew()


def test_a_lease_with_an_empty_spec_is_taken_at_once() -> None:
    """The Helm chart owns the Lease object: it exists before any operator, with no holder,
    renew time or duration."""
    lease, clock = MemoryLeaseApi(), Clock()
    lease.record = LeaseRecord(holder=None, renewed_at=None, duration_s=0, transitions=0)
    a = LeaderElector(lease, "a", clock=clock)
    assert a.acquire(threading.Event())
    assert lease.record is not None
    assert (lease.record.holder, lease.record.renewed_at, lease.record.duration_s) == (
        "a",
        clock.t,
        15,
    )
    assert not LeaderElector(lease, "b", clock=clock).try_acquire_or_renew()


def test_a_lease_deleted_under_the_leader_is_not_made_again() -> None:
    """`helm uninstall` deletes the chart's Lease while the operator pod may still be
    terminating: renewing must not recreate it (it would be left behind)."""
    lease, clock = MemoryLeaseApi(), Clock()
    elector = LeaderElector(lease, "a", renew_deadline_s=5, retry_s=0.001, clock=clock)
    assert elector.try_acquire_or_renew()
    lease.record = None  # deleted

    class Ticking:
        def wait(self, _timeout: float) -> bool:
            clock.t += 1
            return False

    lost = threading.Event()
    elector.hold(lost, Ticking())  # type: ignore[arg-type]
    assert lost.is_set()
    assert lease.record is None


def _refusing(status: int) -> MemoryLeaseApi:
    """A Lease API that answers every read with HTTP ``status``, as lightkube raises it."""
    import httpx2

    class Refusing(MemoryLeaseApi):
        def read(self):  # type: ignore[no-untyped-def]
            request = httpx2.Request("GET", "https://api/leases/ktq")
            raise httpx2.HTTPStatusError(f"{status}", request=request,
                                         response=httpx2.Response(status, request=request))

    return Refusing()


def test_release_after_uninstall_removed_the_role_is_not_a_warning(caplog) -> None:  # type: ignore[no-untyped-def]
    """helm uninstall deletes the operator's Role while its pod still stops: the release
    is then refused (403), which needs no one's attention; another failure still warns."""
    with caplog.at_level("INFO", logger="kubetaskqueue_operator.leader"):
        LeaderElector(_refusing(403), "a").release()
        LeaderElector(_refusing(500), "a").release()
    levels = [(r.levelname, "uninstalled" in r.getMessage()) for r in caplog.records]
    assert levels == [("INFO", True), ("WARNING", False)]
