"""Back-pressure: max_queued (checked in the enqueue script, all or nothing) and Redis
memory (INFO memory, cached briefly) refuse enqueues with QueueFullError."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
import redis
from click.testing import CliRunner
from helpers import RedisServer, wait_until
from kubetaskqueue import KubeTaskQueueError, Manager, QueueFullError, Task
from kubetaskqueue.cli import cli


def queued(m: Manager, topic: str) -> tuple[int, int, int]:
    t = m.stats()["topics"][topic]
    return t["input"], t["scheduled"], t["enqueued"]


def task_hashes(m: Manager, topic: str) -> int:
    return len(m.store.client.keys(m.store.keys(topic).task("*")))


def test_max_queued_counts_input_and_scheduled_and_refuses_whole_batches(any_url: str) -> None:
    m = Manager(any_url, max_queued=5)
    m.enqueue_many("jobs", [1, 2, 3])
    with pytest.raises(QueueFullError, match=r"topic 'jobs' is full: 3 task\(s\) queued .*"
                                             r"3 more would pass max_queued 5; nothing"):
        m.enqueue_many("jobs", [4, 5, 6])
    assert queued(m, "jobs") == (3, 0, 3) and task_hashes(m, "jobs") == 3  # all or nothing
    m.enqueue("jobs", 4, delay_s=600)
    m.enqueue("jobs", 5)
    with pytest.raises(QueueFullError):
        m.enqueue("jobs", 6, delay_s=600)  # scheduled tasks count too
    assert queued(m, "jobs") == (4, 1, 5)
    _, claimed = m.store.claim("jobs", 2, 30.0, "me")  # tasks in work do not count
    assert len(claimed) == 2
    m.enqueue_many("jobs", [6, 7])
    assert queued(m, "jobs") == (4, 1, 7)
    assert issubclass(QueueFullError, KubeTaskQueueError)


def test_max_queued_from_the_environment(any_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBETASKQUEUE_MAX_QUEUED", "1")
    m = Manager(any_url)
    assert m.settings.max_queued == 1
    m.enqueue("jobs", 1)
    with pytest.raises(QueueFullError):
        m.enqueue("jobs", 2)
    assert Manager(any_url, max_queued=0).enqueue("jobs", 2)  # 0 = unlimited


def run_worker(url: str, topic: str, max_queued: int | None) -> None:
    """A burst worker serving ``topic`` that declares ``max_queued`` (published before its
    first claim); it drains the topic and exits."""
    worker = Manager(url, poll_interval_s=0.05)
    worker.register(topic, lambda task: None, max_queued=max_queued)
    worker.run(burst=True)


def test_a_topics_workers_declare_its_limit_for_every_producer(any_url: str) -> None:
    run_worker(any_url, "jobs", max_queued=2)
    producer = Manager(any_url, max_queued=100)  # the topic's own limit wins
    producer.enqueue_many("jobs", [1, 2])
    with pytest.raises(QueueFullError, match="max_queued 2"):
        producer.enqueue("jobs", 3)
    run_worker(any_url, "jobs", max_queued=0)  # declared unlimited
    strict = Manager(any_url, max_queued=1)
    strict.enqueue_many("jobs", [3, 4])
    run_worker(any_url, "jobs", max_queued=None)  # no declaration: producers decide
    strict.enqueue("jobs", 5)
    with pytest.raises(QueueFullError, match="max_queued 1"):
        strict.enqueue("jobs", 6)
    assert Manager(any_url).enqueue("jobs", 6)


def test_register_checks_max_queued() -> None:
    m = Manager("memory://")
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="max_queued must be an int >= 0"):
            m.register(f"t{uuid.uuid4().hex[:6]}", lambda task: None,
                       max_queued=bad)  # type: ignore[arg-type]


def test_cli_enqueue_to_a_full_topic_exits_1_with_one_line(redis_url: str) -> None:
    def enqueue() -> tuple[int, str]:
        result = CliRunner().invoke(cli, ["--redis-url", redis_url, "enqueue", "bp", "{}"],
                                    env={"KUBETASKQUEUE_MAX_QUEUED": "1"})
        return result.exit_code, result.stderr

    assert enqueue()[0] == 0
    assert enqueue() == (1, "error: topic 'bp' is full: 1 task(s) queued (input + scheduled), "
                            "1 more would pass max_queued 1; nothing was enqueued\n")


@pytest.fixture
def small_redis(own_redis: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis(port=own_redis.port, decode_responses=True)
    yield client
    client.config_set("maxmemory", 0)


def fill_to(client: redis.Redis, share: float) -> None:
    """Set maxmemory so that what Redis uses now is ``share`` of it."""
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", int(used / share))


def test_enqueues_stop_above_the_memory_share_and_resume_below(
        own_redis: RedisServer, small_redis: redis.Redis) -> None:
    assert Manager().settings.max_memory_share == 0.9  # the default
    Manager(own_redis.url).enqueue("jobs", 1)
    # Wide margins: used_memory moves by tens of KiB as clients come and go.
    fill_to(small_redis, 0.75)
    m = Manager(own_redis.url)  # a fresh process's first reading (others trust theirs 1 s)
    m.configure(max_memory_share=0.5)
    with pytest.raises(QueueFullError, match=r"Redis memory is at [67]\d% of maxmemory .* "
                                             r"over max_memory_share 50%.*nothing was enqueued"):
        m.enqueue("jobs", 2)
    with pytest.raises(QueueFullError):
        m.enqueue_many("jobs", [3, 4])
    assert queued(m, "jobs")[0] == 1
    small_redis.config_set("maxmemory", 0)  # no limit: accepted once the reading is renewed

    def accepted() -> bool:
        try:
            m.enqueue("jobs", 5)
            return True
        except QueueFullError:
            return False

    wait_until(accepted, what="enqueues accepted again")


def test_a_full_redis_refusing_the_script_is_a_queue_full_error(
        own_redis: RedisServer, small_redis: redis.Redis) -> None:
    m = Manager(own_redis.url)
    m.configure(max_memory_share=0)  # only Redis itself refuses
    m.enqueue("jobs", 1)
    fill_to(small_redis, 1.5)  # already past maxmemory: noeviction refuses writes
    with pytest.raises(QueueFullError, match="reached maxmemory"):
        m.enqueue("jobs", 2)
    small_redis.config_set("maxmemory", 0)
    assert queued(m, "jobs")[0] == 1


def test_the_memory_reading_is_cached(own_redis: RedisServer, small_redis: redis.Redis) -> None:
    """Reads INFO at most once per MEMORY_CHECK_INTERVAL_S (1 s) and process, from any
    thread, so the enqueue path stays one round trip."""
    small_redis.config_set("maxmemory", 1 << 30)
    m = Manager(own_redis.url)
    m.enqueue("warm", 0)  # connects and takes the first reading
    small_redis.config_resetstat()
    threads = [threading.Thread(target=lambda: [m.enqueue("jobs", i) for i in range(100)])
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = small_redis.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 200
    assert stats.get("cmdstat_info", {"calls": 0})["calls"] <= 3  # ~200 enqueues take < 3 s


def test_a_worker_processes_the_backlog_a_full_topic_holds(any_url: str) -> None:
    m = Manager(any_url, max_queued=3, poll_interval_s=0.05)
    done: list[int] = []

    @m.processor("jobs")
    def work(task: Task) -> None:
        done.append(task.payload)

    m.enqueue_many("jobs", [1, 2, 3])
    with pytest.raises(QueueFullError):
        m.enqueue("jobs", 4)
    m.run(burst=True)
    m.enqueue_many("jobs", [4, 5, 6])  # drained: room again
    assert sorted(done) == [1, 2, 3]


def test_a_redis_that_denies_info_leaves_enqueues_unchecked(
        own_redis: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    """Managed Redis services may deny INFO (an ACL, a renamed command): the check turns
    off with one warning; any other refusal is the enqueue's own error."""
    admin = redis.Redis(port=own_redis.port)
    admin.execute_command("ACL", "SETUSER", "producer", "on", ">pw", "~*", "&*", "+@all",
                          "-info")
    m = Manager(f"redis://producer:pw@127.0.0.1:{own_redis.port}/0")
    m.enqueue("jobs", 1)
    m.enqueue("jobs", 2)
    assert m.stats()["topics"]["jobs"]["input"] == 2
    warnings = [r.getMessage() for r in caplog.records if "INFO memory" in r.getMessage()]
    assert len(warnings) == 1 and "not checked against maxmemory" in warnings[0]
    with pytest.raises(KubeTaskQueueError, match="DB index is out of range"):
        Manager(f"redis://127.0.0.1:{own_redis.port}/99").enqueue("jobs", 3)
