"""Pause and resume: a paused topic takes enqueues and promotes due tasks, but no manager
claims from it; in-flight tasks finish under renewed leases; a resume wakes idle managers."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from click.testing import CliRunner
from helpers import wait_until
from kubetaskqueue import Manager, Task
from kubetaskqueue.cli import cli
from kubetaskqueue.events import watch
from kubetaskqueue.metrics import QueueStateCollector
from prometheus_client import CollectorRegistry, generate_latest


@pytest.fixture
def managers() -> Iterator[list[Manager]]:
    """Managers a test starts; stopped afterwards even when it fails."""
    started: list[Manager] = []
    yield started
    for m in started:
        m.stop(timeout_s=0)


def counts(m: Manager, topic: str) -> dict[str, int]:
    return m.stats()["topics"][topic]


def test_paused_claim_leases_nothing_but_promotes_due_tasks(any_url: str) -> None:
    m = Manager(any_url)
    m.enqueue_many("jobs", [1, 2])
    m.enqueue("jobs", 3, delay_s=0.5)
    assert m.pause("jobs") is True
    assert m.pause("jobs") is False  # already paused
    m.enqueue("jobs", 4)  # enqueues still go in
    due_in, claimed = m.store.claim("jobs", 10, 30.0, "me")
    assert claimed == [] and due_in is not None and due_in <= 0.5

    def promoted() -> bool:
        m.store.claim("jobs", 10, 30.0, "me")
        return counts(m, "jobs")["scheduled"] == 0

    wait_until(promoted, what="the delayed task promoted while paused")
    assert counts(m, "jobs") | {"input": 4, "work": 0, "started": 0, "paused": True} == \
        counts(m, "jobs")
    assert m.resume("jobs") is True
    assert m.resume("jobs") is False
    _, claimed = m.store.claim("jobs", 10, 30.0, "me")
    assert [c.payload for c in claimed] == ["1", "2", "4", "3"]
    assert counts(m, "jobs")["paused"] is False


def test_pause_and_resume_are_events(any_url: str) -> None:
    m = Manager(any_url)
    m.pause("jobs")
    m.resume("jobs")
    events = watch(m.store.client, m.settings.namespace, ["jobs"], from_start=True,
                   stats_interval_s=None, block_s=0.1)
    seen = [next(events), next(events)]
    assert [e.type for e in seen] == ["TOPIC_PAUSED", "TOPIC_RESUMED"]
    assert seen[0].topic == "jobs" and seen[0].detail == f"by {m.settings.pod_name}"


def test_in_flight_tasks_finish_under_renewed_leases_while_paused(
        any_url: str, managers: list[Manager]) -> None:
    release = threading.Event()
    done: list[object] = []
    m = Manager(any_url, num_workers=2, lease_ttl_s=1.0, poll_interval_s=0.05)

    @m.processor("jobs")
    def work(task: Task) -> None:
        if task.payload == "slow":
            release.wait(30)
        done.append(task.payload)

    m.enqueue("jobs", "slow")
    m.start()
    managers.append(m)
    work_key = m.store.keys("jobs").work
    wait_until(lambda: counts(m, "jobs")["work"] == 1, what="the slow task started")
    m.pause("jobs")
    m.enqueue_many("jobs", ["a", "b"])
    m.enqueue("jobs", "c", delay_s=0.3)
    first_deadline = m.store.client.zrange(work_key, 0, 0, withscores=True)[0][1]

    def past_first_deadline() -> bool:
        secs, micros = m.store.client.time()
        return secs + micros / 1e6 > first_deadline + 0.2

    wait_until(past_first_deadline, what="the first lease deadline passed")
    renewed = m.store.client.zrange(work_key, 0, 0, withscores=True)
    assert renewed and renewed[0][1] > first_deadline  # the heartbeat kept renewing it
    # The free slot's claim rounds ran (they promoted "c") and leased nothing.
    wait_until(lambda: counts(m, "jobs")["scheduled"] == 0, what="c promoted")
    assert counts(m, "jobs") | {"input": 3, "work": 1, "started": 1} == counts(m, "jobs")
    release.set()
    wait_until(lambda: counts(m, "jobs")["completed"] == 1, what="the slow task acked")
    assert done == ["slow"] and counts(m, "jobs")["started"] == 1
    m.resume("jobs")
    wait_until(lambda: counts(m, "jobs")["completed"] == 4, what="the rest after resume")
    assert sorted(done) == ["a", "b", "c", "slow"]


def blocked_in_blpop(client: redis.Redis) -> bool:
    return any(c.get("cmd") == "blpop" for c in client.client_list())


def test_resume_wakes_an_idle_manager_at_once(redis_url: str) -> None:
    """With a 30 s poll interval, only the wake-up can make the claim quick."""
    ran = threading.Event()
    m = Manager(redis_url, poll_interval_s=30.0)

    @m.processor("jobs")
    def work(task: Task) -> None:
        ran.set()

    m.pause("jobs")
    m.enqueue("jobs", {})
    m.start()
    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        wait_until(lambda: blocked_in_blpop(raw), what="the manager idle in BLPOP")
        resumed_at = time.monotonic()
        m.resume("jobs")
        assert ran.wait(10)
        claimed_after_s = time.monotonic() - resumed_at
        assert claimed_after_s < 3.0, claimed_after_s  # the poll would take up to 30 s
    finally:
        # The claim loop blocks for up to 30 s: wake it so the stop does not wait.
        stopper = threading.Thread(target=m.stop, kwargs={"timeout_s": 0})
        stopper.start()
        wake = m.store.keys("jobs").wake
        wait_until(lambda: raw.lpush(wake, 1) and not stopper.is_alive(), what="stopped")


def test_a_burst_worker_does_not_wait_for_a_paused_topic(any_url: str) -> None:
    m = Manager(any_url, poll_interval_s=0.05)
    ran: list[str] = []

    @m.processor("held")
    def held(task: Task) -> None:
        ran.append("held")

    @m.processor("open")
    def open_(task: Task) -> None:
        ran.append("open")

    m.enqueue_many("held", [1, 2])
    m.enqueue("open", 1)
    m.pause("held")
    m.run(burst=True)
    assert ran == ["open"]
    assert counts(m, "held")["input"] == 2


def test_exporter_and_stats_show_paused_topics(any_url: str) -> None:
    m = Manager(any_url)
    m.enqueue("email", {})
    m.pause("email")
    m.enqueue("sms", {})
    registry = CollectorRegistry()
    registry.register(QueueStateCollector(m.store.client, m.settings.namespace))
    scrape = generate_latest(registry).decode()
    assert 'kubetaskqueue_queue_paused{topic="email"} 1.0' in scrape
    assert 'kubetaskqueue_queue_paused{topic="sms"} 0.0' in scrape
    stats = m.stats()["topics"]
    assert (stats["email"]["paused"], stats["sms"]["paused"]) == (True, False)


def run_cli(url: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--redis-url", url, *args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_pause_resume_and_stats(redis_url: str) -> None:
    topic = f"t{uuid.uuid4().hex[:6]}"
    Manager(redis_url).enqueue(topic, {})
    assert run_cli(redis_url, "pause", topic) == (
        0, f"paused topic {topic!r}; `kubetaskqueue resume {topic}` undoes it\n", "")
    assert run_cli(redis_url, "pause", topic)[1] == f"topic {topic!r} was already paused\n"
    code, out, _ = run_cli(redis_url, "stats")
    assert code == 0 and out.splitlines()[-1] == f"paused (no claims): {topic}"
    assert run_cli(redis_url, "resume", topic) == (0, f"resumed topic {topic!r}\n", "")
    assert run_cli(redis_url, "resume", topic)[1] == f"topic {topic!r} was not paused\n"
    assert "paused" not in run_cli(redis_url, "stats")[1]
    code, out, _ = run_cli(redis_url, "pause", "new-topic")
    assert code == 0 and "(nothing was enqueued to it yet)" in out
    code, _, err = run_cli(redis_url, "pause", "bad topic")
    assert code == 1 and err.startswith("error: invalid topic 'bad topic'")
