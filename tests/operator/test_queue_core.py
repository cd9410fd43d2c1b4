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


def new_task(delay_s: float = 0.0) -> object:
    return store_mod.NewTask(
        id=uuid.uuid4().hex,
        payload_json=json.dumps({}),
        num_retries=3,
        timeout_s=None,
        delay_s=delay_s,
    )


@pytest.fixture
def url() -> str:
    """An embedded store (fakeredis running the core's Lua scripts), fresh per test."""
    url = f"memory://operator-{uuid.uuid4().hex}"
    store = store_mod.RedisStore(store_mod.connect(url))
    store.enqueue("email", [new_task() for _ in range(25)])
    store.enqueue("sms", [new_task() for _ in range(4)])
    _, claimed = store.claim("email", 3, 60.0, "w-a-0000000a")
    assert len(claimed) == 3
    # A heartbeat older than the leases: it still says nothing is busy.
    store.heartbeat_manager("w-a-0000000a", {"pod": "w-a", "slots": 4, "busy": 0,
                                              "topics": "email"}, 30)
    store.enqueue("email", [new_task(delay_s=0.01), new_task(delay_s=3600)])
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
    store = store_mod.RedisStore(store_mod.connect(url))
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
