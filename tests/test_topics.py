"""Unknown topics: the once-per-topic warning, `kubetaskqueue topics` and `topics drop`."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from helpers import wait_until
from kubetaskqueue import Manager, Task
from kubetaskqueue.cli import cli
from kubetaskqueue.keys import topics_key


def fresh(name: str) -> str:
    """A topic name no earlier test in this process has warned about."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def serving(any_url: str) -> Iterator[tuple[Manager, str]]:
    """A running manager serving one topic, and that topic."""
    topic = fresh("served")
    m = Manager(any_url, poll_interval_s=0.05)
    m.register(topic, lambda task: None)
    m.start()
    wait_until(lambda: m.stats()["managers"] == 1, what="the manager's heartbeat")
    yield m, topic
    m.stop()


def warnings_about(caplog: pytest.LogCaptureFixture, topic: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and repr(topic) in r.getMessage()]


def test_an_unserved_topic_is_warned_about_once_per_process(
        any_url: str, serving: tuple[Manager, str], caplog: pytest.LogCaptureFixture) -> None:
    _, served = serving
    typo = fresh("emial")
    producer = Manager(any_url)
    producer.enqueue(typo, {})
    producer.enqueue_many(typo, [1, 2])
    Manager(any_url).enqueue(typo, {})  # another Manager in the same process: still once
    [message] = warnings_about(caplog, typo)
    assert f"enqueued to topic {typo!r}, which no live manager serves (served topics: " \
           f"{served})" in message
    producer.enqueue(served, {})
    assert warnings_about(caplog, served) == []


def test_a_manager_does_not_warn_about_its_own_topics(
        any_url: str, caplog: pytest.LogCaptureFixture) -> None:
    topic = fresh("own")
    m = Manager(any_url, poll_interval_s=0.05)

    @m.processor(topic)
    def work(task: Task) -> None:
        pass

    m.enqueue(topic, {})  # before it runs: it will serve the topic itself
    m.run(burst=True)
    assert warnings_about(caplog, topic) == []


def run(url: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--redis-url", url, *args])
    return result.exit_code, result.stdout, result.stderr


def test_topics_lists_enqueued_paused_and_served_topics(
        any_url: str, serving: tuple[Manager, str]) -> None:
    m, served = serving
    m.enqueue_many("waiting", [1, 2], delay_s=600)
    m.enqueue("waiting", 3)
    m.pause("held")
    code, out, _ = run(any_url, "topics", "--json")
    assert code == 0
    rows = {row["topic"]: row for row in json.loads(out)}
    assert set(rows) == {"waiting", "held", served}
    assert rows["waiting"] == {"topic": "waiting", "paused": False, "max_queued": None,
                               "managers": 0, "pods": [], "input": 1, "scheduled": 2,
                               "work": 0, "dead": 0}
    assert rows["held"]["paused"] is True and rows["held"]["input"] == 0
    assert rows[served]["managers"] == 1 and rows[served]["pods"] == [m.settings.pod_name]
    assert rows[served]["max_queued"] is None
    code, out, _ = run(any_url, "topics")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["topic", "paused", "max_queued", "managers",
                                              "input", "scheduled", "work", "dead"]
    assert lines[1].split() == ["held", "yes", "-", "0", "0", "0", "0", "0"]


def test_topics_counts_every_live_manager_even_two_in_one_pod(
        any_url: str, serving: tuple[Manager, str]) -> None:
    first, topic = serving
    second = Manager(any_url, poll_interval_s=0.05)  # same host, so the same pod name
    second.register(topic, lambda task: None)
    second.start()
    try:
        wait_until(lambda: first.stats()["managers"] == 2, what="the second heartbeat")
        code, out, _ = run(any_url, "topics", "--json")
        [row] = [r for r in json.loads(out) if r["topic"] == topic]
        assert code == 0 and row["managers"] == 2
        assert row["pods"] == [first.settings.pod_name] == [second.settings.pod_name]
    finally:
        second.stop()


# The CLI refuses memory:// for `topics drop` (the change would vanish with it).
@pytest.mark.parametrize("any_url", ["redis"], indirect=True)
def test_topics_drop_refuses_a_topic_with_tasks_or_managers(
        any_url: str, serving: tuple[Manager, str]) -> None:
    m, served = serving
    m.enqueue("full", {})
    code, _, err = run(any_url, "topics", "drop", "full")
    assert code == 1 and err == (
        "error: topic 'full' is not empty (input 1, scheduled 0, work 0, dead 0): let its "
        "tasks finish and purge its dead ones (kubetaskqueue dead purge full --all); "
        "nothing was dropped\n")
    assert m.stats()["topics"]["full"]["input"] == 1
    m.enqueue(served, {})
    wait_until(lambda: m.stats()["topics"][served]["completed"] == 1, what="served task done")
    code, _, err = run(any_url, "topics", "drop", served)
    assert code == 1 and f"topic {served!r} is served by 1 live manager(s) (pods " \
                         f"{m.settings.pod_name})" in err
    code, _, err = run(any_url, "topics", "drop", "never-seen")
    assert code == 1 and err == "error: no topic 'never-seen' in namespace 'kubetaskqueue'\n"


# The CLI refuses memory:// for `topics drop` (the change would vanish with it).
@pytest.mark.parametrize("any_url", ["redis"], indirect=True)
def test_topics_drop_forgets_an_empty_topic_and_a_new_enqueue_lists_it_again(
        any_url: str) -> None:
    m = Manager(any_url)
    m.enqueue("old", {})
    m.store.declare_max_queued("old", 10)  # a controls hash, which goes too
    _, [task] = m.store.claim("old", 1, 30.0, "me")
    assert m.store.ack("old", task.id, task.token)  # empty now
    k = m.store.keys("old")
    assert m.store.client.exists(k.stats, k.events, k.events_held, k.controls) == 4
    assert run(any_url, "topics", "drop", "old") == (0, "dropped topic 'old'\n", "")
    assert m.store.client.exists(k.stats, k.events, k.events_held, k.controls, k.wake) == 0
    assert "old" not in m.stats()["topics"]
    # This producer listed "old" before the drop; its next enqueue lists it again.
    m.enqueue("old", {})
    assert m.store.client.sismember(topics_key(m.settings.namespace), "old")
    assert m.stats()["topics"]["old"]["input"] == 1
