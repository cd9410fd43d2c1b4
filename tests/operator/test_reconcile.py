"""Handler behaviour through the in-memory Kubernetes API (FakeKube) and a fake queue."""

from __future__ import annotations

import pytest
from kubetaskqueue_operator.kube import DELETION_COST, KubeError
from kubetaskqueue_operator.queue import QueueSnapshot
from kubetaskqueue_operator.reconcile import RetryLater, pool_ref, reconcile
from opfakes import NS, REDIS_URL, World, pool_body


def run(w: World) -> float:
    return reconcile(w.deps, pool_ref(w.body), w.body, w.mem)


def test_scale_up_patches_target_writes_status_and_posts_event(world: World) -> None:
    # 20 ready + 2 due + 3 in work = 25 tasks; 10 per replica -> 3 replicas.
    world.queue.snapshot = QueueSnapshot(input=20, scheduled=7, scheduled_due=2, work=3, dead=1)
    assert run(world) == 15.0
    assert world.replicas == 3
    assert world.queue.calls == [(REDIS_URL, "kubetaskqueue", None)]
    s = world.status
    assert s["queue"] == {"input": 20, "scheduled": 7, "scheduledDue": 2, "work": 3, "dead": 1}
    assert (s["backlog"], s["desiredReplicas"], s["observedGeneration"]) == (25, 3, 3)
    assert s["lastScaleTime"] == "2024-01-01T00:16:40Z"
    assert world.condition("Ready")["status"] == "True"
    assert world.condition("RedisReachable")["status"] == "True"
    assert world.condition("Scaling") | {"message": ""} == {
        "type": "Scaling",
        "status": "True",
        "reason": "ScaleUp",
        "message": "",
        "lastTransitionTime": "2024-01-01T00:16:40Z",
    }
    [(about, type_, reason, message)] = world.kube.events
    assert (about.kind, about.name, about.uid, type_, reason) == (
        "WorkerPool",
        "pool",
        "u-1",
        "Normal",
        "ScaledUp",
    )
    assert message.startswith("Scaled deployment/workers from 1 to 3: backlog 25 / 10")
    assert world.metrics.desired_by_pool == {"jobs/pool": 3}
    assert world.metrics.current_by_pool == {"jobs/pool": 1}  # the pods that existed
    assert world.metrics.scales == [("jobs/pool", "up")]


def test_topics_and_key_prefix_reach_the_reader(world: World) -> None:
    world.body = pool_body(
        topics=["email", "sms"],
        redis={"urlSecretRef": {"name": "redis", "key": "url"}, "keyPrefix": "staging"},
    )
    run(world)
    assert world.queue.calls == [(REDIS_URL, "staging", ("email", "sms"))]


def test_steady_round_posts_no_event_and_skips_identical_status_write(world: World) -> None:
    world.queue.snapshot = QueueSnapshot(input=5)
    run(world)
    world.clock.t += 15
    run(world)
    assert world.replicas == 1
    assert world.kube.events == []
    assert world.kube.calls.count("set_replicas") == 0
    assert world.kube.calls.count("patch_pool_status") == 1
    assert world.condition("Scaling")["reason"] == "Steady"


def test_scale_down_marks_busy_pods_first_and_keeps_them(world: World) -> None:
    world.kube.targets[(NS, "Deployment", "workers")].replicas = 5
    world.add_pods("w-a", "w-b", "w-c", "w-d", "w-e")
    world.kube.pods[(NS, "w-e")].annotations[DELETION_COST] = "0"  # already right: not patched
    # Two tasks in flight, on pods w-b (2 slots busy) and w-d (1); 'gone' is not our pod.
    world.queue.snapshot = QueueSnapshot(
        work=3, owners={"w-b-0000000a": 2, "w-d-0000000b": 1, "gone-0000000c": 4})
    run(world)
    assert world.replicas == 5  # held: the window starts with the current size
    world.clock.t += 301
    run(world)
    assert world.replicas == 2  # ceil(3/10)=1, but two pods hold leases
    costs = {name: pod.annotations.get(DELETION_COST) for (_, name), pod in world.kube.pods.items()}
    assert costs == {"w-a": "0", "w-b": "2", "w-c": "0", "w-d": "1", "w-e": "0"}
    calls = world.kube.calls
    assert calls.index("annotate_pod") < calls.index("set_replicas")
    assert calls.count("annotate_pod") == 4
    assert world.kube.events[-1][2] == "ScaledDown"
    assert world.status["busyPods"] == 2


def test_never_scales_to_zero_while_a_task_is_in_work(world: World) -> None:
    world.queue.snapshot = QueueSnapshot(work=1)
    for _ in range(30):
        world.clock.t += 60
        run(world)
        assert world.replicas >= 1
    world.queue.snapshot = QueueSnapshot()
    world.clock.t += 301
    run(world)
    assert world.replicas == 0


def test_redis_down_sets_condition_and_retries(world: World) -> None:
    world.queue.error = "Redis at redis://:***@redis:6379/0: Connection refused"
    with pytest.raises(RetryLater) as err:
        run(world)
    assert err.value.delay_s == 15.0
    redis = world.condition("RedisReachable")
    assert (redis["status"], redis["reason"]) == ("False", "RedisUnreachable")
    assert "Connection refused" in redis["message"]
    assert world.condition("Ready")["status"] == "False"
    assert world.replicas == 1
    assert "s3cret" not in str(world.status)


def test_condition_transition_time_changes_only_on_flip(world: World) -> None:
    world.queue.error = "down"
    with pytest.raises(RetryLater):
        run(world)
    down_since = world.condition("RedisReachable")["lastTransitionTime"]
    world.clock.t += 15
    with pytest.raises(RetryLater):
        run(world)
    assert world.condition("RedisReachable")["lastTransitionTime"] == down_since
    world.queue.error = None
    world.clock.t += 15
    run(world)
    up = world.condition("RedisReachable")
    assert up["status"] == "True" and up["lastTransitionTime"] != down_since


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        ("missing_secret", "RedisSecretUnavailable"),
        ("missing_target", "TargetUnavailable"),
        ("scale_forbidden", "ScaleFailed"),
        ("bad_spec", "InvalidSpec"),
    ],
)
def test_failures_become_ready_false_and_retry(world: World, breakage: str, reason: str) -> None:
    world.queue.snapshot = QueueSnapshot(input=100)
    if breakage == "missing_secret":
        del world.kube.secrets[(NS, "redis")]
    elif breakage == "missing_target":
        del world.kube.targets[(NS, "Deployment", "workers")]
    elif breakage == "scale_forbidden":
        world.kube.fail["set_replicas"] = KubeError("scale deployment/workers: 403 Forbidden", 403)
    else:
        world.body = pool_body(minReplicas=5, maxReplicas=2)
    with pytest.raises(RetryLater):
        run(world)
    ready = world.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("False", reason)
    assert world.condition("Scaling")["status"] == "False"
    assert world.kube.events == []


def test_status_write_failure_is_retried_not_raised_raw(world: World) -> None:
    world.kube.fail["patch_pool_status"] = KubeError("patch status: 500", 500)
    with pytest.raises(RetryLater):
        run(world)


def test_event_failure_does_not_undo_the_scale(world: World) -> None:
    world.kube.fail["post_event"] = KubeError("post Event: 403 Forbidden", 403)
    world.queue.snapshot = QueueSnapshot(input=30)
    run(world)
    assert world.replicas == 3
    assert world.condition("Ready")["status"] == "True"


def test_terminating_pods_are_not_counted_busy(world: World) -> None:
    from kubetaskqueue_operator.kube import Pod

    world.add_pods("w-a")
    real_list = world.kube.list_pods
    world.kube.list_pods = lambda ns, sel: [Pod("w-a", {}, terminating=True)]  # type: ignore[method-assign]
    world.queue.snapshot = QueueSnapshot(work=1, owners={"w-a-0000000a": 1})
    run(world)
    assert world.status["busyPods"] == 0
    world.kube.list_pods = real_list  # type: ignore[method-assign]


def test_a_deleted_pods_leases_are_released_at_once_with_the_reason(world: World) -> None:
    world.add_pods("w-a", "w-b")
    world.queue.snapshot = QueueSnapshot(work=3, owners={"w-a-0000000a": 2, "w-b-0000000b": 1})
    run(world)
    assert world.queue.released == []  # first round: nothing to compare with
    del world.kube.pods[(NS, "w-a")]  # kubectl delete pod --grace-period=0
    world.queue.snapshot = QueueSnapshot(work=3, topics=("email",),
                                         owners={"w-a-0000000a": 2, "w-b-0000000b": 1})
    run(world)
    assert world.queue.released == [(("email",), ["w-a-0000000a"], "pod w-a was deleted")]
    _, type_, reason, message = world.kube.events[-1]
    assert (type_, reason) == ("Warning", "WorkerLost")
    assert message.startswith("pod w-a was deleted: released its 2 task(s) at once")
    run(world)  # reported once
    assert len(world.queue.released) == 1


def test_an_oom_killed_worker_frees_the_old_managers_leases_only(world: World) -> None:
    world.add_pods("w-a")
    world.queue.snapshot = QueueSnapshot(work=2, owners={"w-a-0000000a": 2})
    run(world)
    pod = world.kube.pods[(NS, "w-a")]
    pod.restarts, pod.last_termination = 1, "OOMKilled (exit 137)"
    world.queue.snapshot = QueueSnapshot(work=3, owners={"w-a-0000000a": 2, "w-a-0000000f": 1})
    run(world)
    assert world.queue.released == [((), ["w-a-0000000a"], "pod w-a OOMKilled (exit 137)")]


def test_busy_pods_come_from_the_leases_not_the_heartbeat(world: World) -> None:
    world.kube.targets[(NS, "Deployment", "workers")].replicas = 3
    world.add_pods("w-a", "w-b", "w-c")
    world.queue.snapshot = QueueSnapshot(work=2, owners={"w-c-0000000c": 2})
    world.clock.t += 301
    run(world)
    world.clock.t += 301
    run(world)
    assert world.status["busyPods"] == 1
    assert world.kube.pods[(NS, "w-c")].annotations[DELETION_COST] == "2"
