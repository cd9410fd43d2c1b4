"""Which pods' workers died between two rounds, and whose leases that frees (pure)."""

from __future__ import annotations

from kubetaskqueue_operator.kube import Pod
from kubetaskqueue_operator.recovery import Loss, busy_by_pod, find_losses, pod_of, view


def pod(name: str, **fields: object) -> Pod:
    return Pod(name=name, annotations={}, phase=str(fields.pop("phase", "Running")),
               **fields)  # type: ignore[arg-type]


def test_pod_of_strips_the_manager_suffix() -> None:
    assert pod_of("w-7d9f-2fclf-0a1b2c3d") == "w-7d9f-2fclf"


def test_nothing_is_lost_while_pods_live_and_keep_their_containers() -> None:
    pods = [pod("w-1"), pod("w-2", restarts=1)]
    owners = {"w-1-aaaaaaaa": 2, "w-2-bbbbbbbb": 1}
    assert find_losses(view(pods), pods, owners, owners) == []


def test_a_deleted_pod_loses_every_lease_of_its_managers_and_only_its_own() -> None:
    before = view([pod("w-1"), pod("w-10")])
    owners = {"w-1-aaaaaaaa": 2, "w-1-cccccccc": 1, "w-10-bbbbbbbb": 3}
    losses = find_losses(before, [pod("w-10")], owners, owners)
    assert losses == [Loss("w-1", ("w-1-aaaaaaaa", "w-1-cccccccc"), "pod w-1 was deleted")]


def test_a_pod_gone_after_its_grace_period_says_so() -> None:
    before = view([pod("w-1", terminating=True)])
    [loss] = find_losses(before, [], {"w-1-aaaaaaaa": 1}, {})
    assert loss.reason == "pod w-1 was deleted (its grace period ran out)"


def test_an_oom_killed_container_frees_only_the_dead_managers_leases() -> None:
    before = view([pod("w-1", restarts=0)])
    now = [pod("w-1", restarts=1, last_termination="OOMKilled (exit 137)")]
    # The new container's manager already claimed a task; the old one's two are stale.
    owners_before = {"w-1-aaaaaaaa": 2}
    owners = {"w-1-aaaaaaaa": 2, "w-1-dddddddd": 1}
    losses = find_losses(before, now, owners, owners_before)
    assert losses == [Loss("w-1", ("w-1-aaaaaaaa",), "pod w-1 OOMKilled (exit 137)")]


def test_an_evicted_pod_gives_the_kubelets_reason() -> None:
    before = view([pod("w-1")])
    now = [pod("w-1", phase="Failed", reason="Evicted",
               message="The node was low on resource: memory.")]
    [loss] = find_losses(before, now, {"w-1-aaaaaaaa": 1}, {})
    assert loss.reason == "pod w-1 Evicted: The node was low on resource: memory."
    # Reported once: the next round sees a pod that had already failed.
    assert find_losses(view(now), now, {"w-1-aaaaaaaa": 1}, {}) == []


def test_a_dead_pod_without_leases_needs_nothing() -> None:
    assert find_losses(view([pod("w-1")]), [], {"w-2-aaaaaaaa": 1}, {}) == []


def test_busy_by_pod_sums_managers_and_ignores_pods_outside_the_target() -> None:
    owners = {"w-1-aaaaaaaa": 2, "w-1-bbbbbbbb": 1, "other-cccccccc": 4, "w-2-dddddddd": 0}
    assert busy_by_pod(owners, ["w-1", "w-2"]) == {"w-1": 3}
