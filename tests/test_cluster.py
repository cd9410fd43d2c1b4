"""Redis Cluster: the same queue on three real cluster masters (redis+cluster://).

Topics are picked so their hash slots live on different masters: a manager
serving all of them must wait, claim, reap and report across nodes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from helpers import RedisServer, free_cluster_port, wait_until
from kubetaskqueue import ConfigError, Manager, ResultTimeoutError, Task
from kubetaskqueue import cluster as cluster_module
from kubetaskqueue.admin import requeue_dead, select_dead
from kubetaskqueue.cli import cli
from kubetaskqueue.connection import connect
from kubetaskqueue.errors import RedisUnavailableError
from kubetaskqueue.metrics import QueueStateCollector
from kubetaskqueue.runner import RedisHealth
from kubetaskqueue_operator.queue import RedisQueueReader
from prometheus_client import CollectorRegistry
from redis.cluster import RedisCluster


class Cluster:
    def __init__(self, nodes: list[RedisServer]) -> None:
        self.nodes = nodes
        self.client = RedisCluster(host="127.0.0.1", port=nodes[0].port, decode_responses=True)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:2])

    def node_of(self, key: str) -> int:
        """Port of the master that owns ``key``'s slot."""
        return int(self.client.get_node_from_key(key).port)

    def topics_on_every_node(self) -> list[str]:
        """One topic per master (names probed until each master owns one)."""
        by_port: dict[int, str] = {}
        for i in range(200):
            by_port.setdefault(self.node_of(f"kubetaskqueue:{{t{i}}}:input"), f"t{i}")
            if len(by_port) == len(self.nodes):
                return sorted(by_port.values())
        raise AssertionError("no topic name found for every master")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if shutil.which("redis-cli") is None:
        pytest.fail("redis-cli not found: apt-get install redis-tools (.ci/run does this)")
    nodes = []
    for i in range(3):
        workdir = tmp_path_factory.mktemp(f"cluster{i}")
        node = RedisServer(workdir, appendonly=False, port=free_cluster_port(),
                           args=("--cluster-enabled", "yes", "--cluster-config-file",
                                 str(workdir / "nodes.conf")))
        node.start()
        nodes.append(node)
    try:
        subprocess.run(["redis-cli", "--cluster", "create",
                        *[f"127.0.0.1:{n.port}" for n in nodes], "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        probe = redis.Redis(port=nodes[0].port, decode_responses=True)
        wait_until(lambda: probe.cluster("info").get("cluster_state") == "ok", 30,
                   what="cluster state ok")
        yield Cluster(nodes)
    finally:
        for node in nodes:
            node.kill()


@pytest.fixture
def cluster_url(cluster: Cluster) -> str:
    cluster.client.flushall(target_nodes=RedisCluster.PRIMARIES)
    return cluster.url


def test_one_manager_serves_topics_on_every_master(cluster: Cluster, cluster_url: str) -> None:
    topics = cluster.topics_on_every_node()
    assert len({cluster.node_of(f"kubetaskqueue:{{{t}}}:input") for t in topics}) == 3
    # A long poll interval: only the wake-up hints can make these tasks start quickly.
    m = Manager(cluster_url, poll_interval_s=3.0, num_workers=4, lease_ttl_s=5.0)
    latency: dict[str, float] = {}
    for topic in topics:
        m.register(topic, lambda task: latency.setdefault(
            task.topic, time.time() - task.payload["sent"]))
    runner = threading.Thread(target=m.run, daemon=True)
    runner.start()
    wait_until(lambda: m.stats()["managers"] == 1, 10, what="manager registered")
    # Idle: every master has a client blocked on a wake-up list.
    wait_until(lambda: all(redis.Redis(port=n.port).info("clients")["blocked_clients"] >= 1
                           for n in cluster.nodes), 10, what="wake-up threads blocked")
    for topic in topics:
        m.enqueue(topic, {"sent": time.time()})
    wait_until(lambda: len(latency) == 3, 5, what="one task per master done")
    assert max(latency.values()) < 1.0, latency
    stats = m.stats()["topics"]
    assert {t: (stats[t]["completed"], stats[t]["work"]) for t in topics} == {
        t: (1, 0) for t in topics}
    m.stop()
    runner.join(10)
    assert not runner.is_alive()
    # The per-topic wake-up threads end by themselves once nobody waits.
    wait_until(lambda: not any(t.name.startswith("kubetaskqueue-wake")
                               for t in threading.enumerate()), 10, what="wake threads gone")


def test_retries_dead_and_requeue_on_another_master(cluster: Cluster, cluster_url: str) -> None:
    topic = cluster.topics_on_every_node()[-1]
    m = Manager(cluster_url, poll_interval_s=0.1, num_workers=2, lease_ttl_s=5.0)
    attempts: list[int] = []

    @m.processor(topic)
    def flaky(task: Task) -> None:
        attempts.append(task.attempt)
        if task.payload["fail"]:
            raise RuntimeError("broken on purpose")

    task_id = m.enqueue(topic, {"fail": True}, num_retries=1)
    m.run(burst=True)
    assert attempts == [1, 2]
    assert select_dead(m.store, topic, None, None) == [task_id]
    assert requeue_dead(m.store, topic, [task_id]) == 1
    m.store.client.hset(m.store.keys(topic).task(task_id), "payload", '{"fail": false}')
    m.run(burst=True)
    assert attempts == [1, 2, 1]
    assert m.stats()["topics"][topic]["completed"] == 1


def test_results_lookup_delete_and_dead_retention(cluster: Cluster, cluster_url: str) -> None:
    topic = cluster.topics_on_every_node()[1]
    m = Manager(cluster_url, poll_interval_s=0.1, num_workers=2, dead_max_tasks=1)

    @m.processor(topic)
    def double(task: Task) -> int:
        if task.payload == 0:
            raise RuntimeError("zero")
        return int(task.payload) * 2

    kept = m.enqueue(topic, 21, keep_result_s=60)
    m.enqueue_many(topic, [0, 0])
    m.run(burst=True)
    assert m.result(topic, kept, wait_s=5) == 42
    assert m.stats()["topics"][topic]["dead_dropped"] == 1  # the cap is 1
    later = m.enqueue(topic, 1, delay_s=600, keep_result_s=60)
    info = m.task(topic, later)
    assert info is not None and info.state == "scheduled"
    with pytest.raises(ResultTimeoutError):  # a blocking wait on the topic's master
        m.result(topic, later, wait_s=0.2)
    assert m.delete(topic, later) is True and m.task(topic, later) is None


def test_watch_follows_topics_in_different_slots(cluster: Cluster, cluster_url: str) -> None:
    topics = cluster.topics_on_every_node()
    m = Manager(cluster_url)
    for topic in topics:
        m.enqueue(topic, {})
    events = m.watch(topics, stats_interval_s=None, block_s=0.2, from_start=True)
    seen = {next(events).topic for _ in topics}
    assert seen == set(topics)


def test_plain_url_to_a_cluster_node_says_what_to_use(cluster: Cluster, cluster_url: str) -> None:
    node = cluster.nodes[0]
    topic = next(t for t in (f"t{i}" for i in range(200))
                 if cluster.node_of(f"kubetaskqueue:{{{t}}}:input") != node.port)
    with pytest.raises(ConfigError, match=r"Redis Cluster node .* redis\+cluster://"):
        Manager(node.url).enqueue(topic, {})


def test_an_evicting_policy_on_any_master_is_refused(cluster: Cluster, cluster_url: str) -> None:
    last = redis.Redis(port=cluster.nodes[-1].port)
    last.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with pytest.raises(ConfigError, match="allkeys-lru"):
            Manager(cluster_url).store.check_eviction_policy()
    finally:
        last.config_set("maxmemory-policy", "noeviction")
    assert Manager(cluster_url).store.check_eviction_policy() is None


def test_cluster_url_errors(redis_url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bad port"):
        connect("redis+cluster://127.0.0.1:notaport")
    with pytest.raises(ConfigError, match="names no node"):
        connect("redis+cluster://user:pw@/")
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    with pytest.raises(RedisUnavailableError, match="is it running"):
        Manager(f"redis+cluster://127.0.0.1:{port}").enqueue("t", {})


def test_wake_threads_end_when_idle_and_come_back(
        cluster: Cluster, cluster_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster_module, "_WAKE_IDLE_EXIT_S", 0.3)
    monkeypatch.setattr(cluster_module, "_WAKE_BLOCK_S", 0.1)
    keys = [f"kubetaskqueue:{{{t}}}:wake" for t in cluster.topics_on_every_node()]
    fan_out = cluster_module.WakeFanOut(cluster.client, keys)

    def wake_threads() -> int:
        return sum(t.name.startswith("kubetaskqueue-wake") for t in threading.enumerate())

    assert fan_out.wait(0.05) is False and wake_threads() == 3
    wait_until(lambda: wake_threads() == 0, 5, what="idle wake-up threads gone")
    cluster.client.rpush(keys[-1], "1")  # a hint left while nobody watched
    assert fan_out.wait(2.0) is True and wake_threads() == 3
    cluster.client.rpush(keys[0], "1")
    assert fan_out.wait(2.0) is True


def test_operator_exporter_and_cli_read_queue_state_across_masters(
        cluster: Cluster, cluster_url: str) -> None:
    """What autoscaling, alerts and `kubetaskqueue stats` read: topics on three masters."""
    topics = cluster.topics_on_every_node()
    producer = Manager(cluster_url)
    for n, topic in enumerate(topics, start=1):
        producer.enqueue_many(topic, [{}] * n)
    snapshot = RedisQueueReader()(cluster_url, "kubetaskqueue", None)
    assert (snapshot.input, snapshot.backlog) == (6, 6)
    registry = CollectorRegistry()
    registry.register(QueueStateCollector(connect(cluster_url), "kubetaskqueue"))
    assert [registry.get_sample_value("kubetaskqueue_queue_tasks",
                                      {"topic": t, "state": "input"}) for t in topics] == [1, 2, 3]
    result = CliRunner().invoke(cli, ["--redis-url", cluster_url, "stats", "--json"])
    assert result.exit_code == 0, result.output
    assert [json.loads(result.stdout)["topics"][t]["input"] for t in topics] == [1, 2, 3]


def test_queue_controls_across_masters(cluster: Cluster, cluster_url: str) -> None:
    """Pause, max_queued, the memory check (per node) and topics listing on three masters."""
    from kubetaskqueue import QueueFullError
    from kubetaskqueue.topics import drop_topic, list_topics

    held, limited, full = cluster.topics_on_every_node()
    producer = Manager(cluster_url, max_queued=2)
    producer.pause(held)
    producer.enqueue_many(held, [1, 2])
    assert producer.store.claim(held, 5, 30.0, "me")[1] == []
    producer.enqueue_many(limited, [1, 2])
    with pytest.raises(QueueFullError, match="max_queued 2"):
        producer.enqueue(limited, 3)
    node = redis.Redis(port=cluster.node_of(f"kubetaskqueue:{{{full}}}:input"))
    node.config_set("maxmemory", int(int(node.info("memory")["used_memory"]) / 0.75))
    try:
        with pytest.raises(QueueFullError, match=r"Redis memory is at [67]\d% of maxmemory"):
            guarded = Manager(cluster_url)  # a fresh reading of that node
            guarded.configure(max_memory_share=0.5)
            guarded.enqueue(full, 1)
        Manager(cluster_url).enqueue(held, 3)  # another master is fine
    finally:
        node.config_set("maxmemory", 0)
    rows = {r.name: r for r in list_topics(connect(cluster_url), "kubetaskqueue")}
    assert rows[held].state.paused and rows[held].state.input == 3
    assert not rows[limited].state.paused and rows[limited].state.input == 2
    assert producer.resume(held) and len(producer.store.claim(held, 5, 30.0, "me")[1]) == 3
    producer.store.set_paused(full, True, "test")  # listed, though it never got a task
    drop_topic(producer.store, full)
    assert full not in {r.name for r in list_topics(connect(cluster_url), "kubetaskqueue")}


def test_schedules_fire_into_topics_on_every_master_and_are_listed(
        cluster: Cluster, cluster_url: str) -> None:
    """Each fire is one script in its topic's slot; the listing reads them all."""
    topics = cluster.topics_on_every_node()
    m = Manager(cluster_url, poll_interval_s=0.2, lease_ttl_s=3.0)
    runs: list[tuple[str, float]] = []
    for topic in topics:
        m.register(topic, lambda task: runs.append((task.topic, task.payload["fire_time"])))
        m.schedule(f"every-{topic}", topic, {}, every_s=0.2)
    m.start()
    try:
        wait_until(lambda: {t for t, _ in runs} == set(topics), 10, what="a fire per master")
        result = CliRunner().invoke(cli, ["--redis-url", cluster_url, "schedules", "--json"])
        assert result.exit_code == 0, result.output
        listed = json.loads(result.stdout)["schedules"]
        assert [(s["topic"], s["managers"]) for s in listed] == [(t, 1) for t in topics]
        assert all(s["last_fire"] for s in listed)
    finally:
        m.stop()
    assert len(runs) == len(set(runs))


def test_a_manager_rides_out_the_whole_cluster_going_away(
        cluster: Cluster, cluster_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Last in the module: it restarts every node (data is not persisted here)."""
    topics = cluster.topics_on_every_node()
    failed_in: set[str] = set()  # threads that met the outage
    record_failure = RedisHealth.failure

    def failure(health: RedisHealth, exc: Exception) -> float:
        failed_in.add(threading.current_thread().name)
        return record_failure(health, exc)

    monkeypatch.setattr(RedisHealth, "failure", failure)
    m = Manager(cluster_url, poll_interval_s=0.2, num_workers=2, lease_ttl_s=3.0)
    done: list[str] = []
    for topic in topics:
        m.register(topic, lambda task: done.append(task.topic))
    m.start()
    try:
        m.enqueue(topics[0], {})
        wait_until(lambda: len(done) == 1, 10, what="first task done")
        for node in cluster.nodes:
            node.kill()
        # The claim loop (woken by its wake-up threads) and the heartbeat meet the outage.
        wait_until(lambda: {"kubetaskqueue-claim", "kubetaskqueue-maintenance"} <= failed_in,
                   10, what="claim loop and heartbeat saw Redis down")
        for node in cluster.nodes:
            node.start()
        wait_until(lambda: cluster.client.cluster_info().get("cluster_state") == "ok", 30,
                   what="cluster back")

        def enqueue_all() -> bool:
            try:
                m.enqueue_many(topics[0], [{}])
            except RedisUnavailableError:
                return False  # the producer side reconnects on its next call
            return True

        wait_until(enqueue_all, 20, what="enqueue works again")
        for topic in topics[1:]:
            m.enqueue(topic, {})
        wait_until(lambda: len(done) == 1 + len(topics), 30,
                   what="tasks enqueued after the outage done")
        # The heartbeat re-registers the manager in the emptied Redis: it is alive too.
        wait_until(lambda: m.stats()["managers"] == 1, 10, what="manager heartbeat back")
    finally:
        m.stop()
