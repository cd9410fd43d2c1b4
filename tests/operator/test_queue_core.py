"""The real queue reader on the core library: tasks enqueued, claimed and heartbeated
through kubetaskqueue's own store code, read back by the operator and scaled on."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from kubetaskqueue_operator.queue import QueueReadError, RedisQueueReader
from kubetaskqueue_operator.reconcile import pool_ref, reconcile
from opfakes import NS, World

store_mod = pytest.importorskip("kubetaskqueue.store")
connection = pytest.importorskip("kubetaskqueue.connection")
producer = pytest.importorskip("kubetaskqueue.producer")


def new_tasks(n: int, delay_s: float = 0.0) -> object:
    return producer.NewTasks([uuid.uuid4().hex for _ in range(n)], [json.dumps({})] * n,
                             num_retries=3, delay_s=delay_s)


@pytest.fixture
def url() -> str:
    """An embedded store (fakeredis running the core's Lua scripts), fresh per test."""
    url = f"memory://operator-{uuid.uuid4().hex}"
    store = store_mod.RedisStore(connection.connect(url))
    store.enqueue("email", new_tasks(25))
    store.enqueue("sms", new_tasks(4))
    _, claimed = store.claim("email", 3, 60.0, "w-a-0000000a")
    assert len(claimed) == 3
    # A heartbeat older than the leases: it still says nothing is busy.
    store.heartbeat_manager("w-a-0000000a", {"pod": "w-a", "slots": 4, "busy": 0,
                                              "topics": "email"}, 30)
    store.enqueue("email", new_tasks(1, delay_s=0.01))
    store.enqueue("email", new_tasks(1, delay_s=3600))
    time.sleep(0.05)  # the first scheduled task is now due but not yet promoted
    return url


def test_reader_sums_the_pools_topics(url: str) -> None:
    snap = RedisQueueReader()(url, "kubetaskqueue", ("email",))
    assert (snap.input, snap.work, snap.scheduled, snap.scheduled_due) == (22, 3, 2, 1)
    assert snap.backlog == 26
    assert dict(snap.owners) == {"w-a-0000000a": 3}  # from the leases, not the heartbeat
    assert snap.topics == ("email",)
    assert snap.managers == 1
    every = RedisQueueReader()(url, "kubetaskqueue", None)
    assert every.input == 26  # sms counts when no topics are named


def test_reader_errors_hide_the_password() -> None:
    reader = RedisQueueReader()
    with pytest.raises(QueueReadError) as err:
        reader("redis://:hunter2@127.0.0.1:1/0", "kubetaskqueue", None)
    assert "hunter2" not in str(err.value)
    assert "127.0.0.1:1" in str(err.value)


def test_pool_scales_on_core_state(world: World, url: str) -> None:
    world.kube.secrets[(NS, "redis")] = {"url": url}
    world.add_pods("w-a", "w-b")
    world.deps.read_queue = RedisQueueReader()
    world.body["spec"]["topics"] = ["email"]
    reconcile(world.deps, pool_ref(world.body), world.body, world.mem)
    assert world.replicas == 3  # ceil((22 + 1 + 3) / 10)
    assert world.status["busyPods"] == 1
    assert world.status["queue"]["scheduledDue"] == 1


def test_a_paused_topic_counts_only_its_work(world: World, url: str) -> None:
    store = store_mod.RedisStore(connection.connect(url))
    assert store.set_paused("email", True, "test")
    snap = RedisQueueReader()(url, "kubetaskqueue", None)
    # email: 22 ready + 1 due are not backlog while paused; its 3 in work are. sms counts.
    assert (snap.input, snap.scheduled_due, snap.work, snap.paused_ready) == (4, 0, 3, 23)
    world.kube.secrets[(NS, "redis")] = {"url": url}
    world.add_pods("w-a")
    world.deps.read_queue = RedisQueueReader()
    world.body["spec"]["topics"] = ["email"]
    reconcile(world.deps, pool_ref(world.body), world.body, world.mem)
    assert world.replicas == 1  # the busy pod stays; nothing is added for the backlog
    assert world.status["backlog"] == 3
    assert "(23 ready in paused topics not counted)" in world.condition("Scaling")["message"]
    store.set_paused("email", False, "test")
    reconcile(world.deps, pool_ref(world.body), world.body, world.mem)
    assert world.replicas == 3  # ceil((22 + 1 + 3) / 10) once resumed


def limited_url(declare: bool = True) -> str:
    """200 ready tasks in a topic limited to 10/s by a live 8-slot manager; the tasks
    ran 0.4 s on average: ceil(10 x 0.4 / 8) = 1 pod keeps the limit busy."""
    url = f"memory://operator-limit-{uuid.uuid4().hex}"
    store = store_mod.RedisStore(connection.connect(url))
    if declare:
        store.declare_limit("api", "w-a-0000000a", 30.0, (0.1, 1, 8, "10/s"))
    store.enqueue("api", new_tasks(201))
    _, [row] = store.claim("api", 1, 60.0, "w-a-0000000a")
    store.ack_many("api", [(row.id, row.token)], run_s=0.4)
    store.heartbeat_manager("w-a-0000000a", {"pod": "w-a", "slots": 8, "busy": 0,
                                              "topics": "api"}, 30)
    return url


def test_reader_passes_on_the_rate_limit_and_the_run_time() -> None:
    snap = RedisQueueReader()(limited_url(), "kubetaskqueue", ("api",))
    [limited] = snap.rate_limited
    assert (limited.backlog, limited.rate_per_s, limited.slots_per_pod) == (200, 10.0, 8)
    assert limited.mean_run_s == pytest.approx(0.4)
    assert limited.pods == 1
    assert RedisQueueReader()(limited_url(declare=False), "kubetaskqueue", ("api",)) \
        .rate_limited == ()


@pytest.mark.parametrize(("declare", "replicas"), [(True, 1), (False, 5)])
def test_pool_does_not_scale_up_for_backlog_the_limit_makes_wait(
        world: World, declare: bool, replicas: int) -> None:
    world.kube.secrets[(NS, "redis")] = {"url": limited_url(declare)}
    world.add_pods("w-a")
    world.deps.read_queue = RedisQueueReader()
    world.body["spec"]["topics"] = ["api"]
    reconcile(world.deps, pool_ref(world.body), world.body, world.mem)
    # Unlimited: ceil(200 / 10) = 20, up by maxStep 4 from 1. Limited: 1 pod is enough.
    assert world.replicas == replicas
    if declare:
        assert "waiting for rate limits (at most 1 pods)" in world.condition("Scaling")["message"]


def test_a_pool_at_zero_keeps_the_limit_last_in_force() -> None:
    url = limited_url()
    store = store_mod.RedisStore(connection.connect(url))
    store.declare_limit("api", "w-a-0000000a", 30.0, None)  # its manager stopped
    store.deregister_manager("w-a-0000000a")
    [limited] = RedisQueueReader()(url, "kubetaskqueue", ("api",)).rate_limited
    assert limited.pods == 1
    store.heartbeat_manager("w-b-0000000b", {"pod": "w-b", "slots": 8, "busy": 0,
                                              "topics": "api"}, 30)
    # A live manager of the topic declares no limit: none applies any more.
    assert RedisQueueReader()(url, "kubetaskqueue", ("api",)).rate_limited == ()
