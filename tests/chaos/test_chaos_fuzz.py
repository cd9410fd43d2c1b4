"""Scenario 6, fuzzed input: the API, raw task hashes in Redis, and the CLI.

Enqueue either stores exactly what it was given or refuses with a clear error; a
corrupt task hash ends completed or dead with a reason; no worker process crashes."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import pytest
import redis
from chaos_env import FUZZ_EXAMPLES
from click.testing import CliRunner
from fuzz_strategies import cli_argv, nested, numbers, payloads, raw_task_fields, task_ids, topics
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubetaskqueue import Manager
from kubetaskqueue.cli import cli
from kubetaskqueue.errors import KubeTaskQueueError, PayloadError
from kubetaskqueue.keys import TopicKeys
from ledger import Ledger
from probe import NS, client, topic_state, wait_until
from redis_proc import RedisProc
from workers import WorkerPool

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]

FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
CLEAR_ERRORS = (KubeTaskQueueError, ValueError)  # PayloadError, DuplicateTaskError, ...


def test_fuzz_enqueue(queue_redis: RedisProc, figures: dict[str, Any]) -> None:
    producer = Manager(queue_redis.url)
    raw = redis.Redis(port=queue_redis.port)  # bytes: what is really stored
    tried, accepted, errors = 0, 0, set()

    @FUZZ
    @given(payload=payloads, fuzz_args=st.booleans(), topic=topics, task_id=task_ids,
           num_retries=numbers, delay_s=numbers, timeout_s=numbers)
    def enqueue_one(payload: Any, fuzz_args: bool, topic: str, task_id: str | None,
                    num_retries: Any, delay_s: Any, timeout_s: Any) -> None:
        nonlocal tried, accepted
        tried += 1
        if not fuzz_args:  # half the examples fuzz the payload alone
            topic, num_retries, delay_s, timeout_s = "fuzz", 0, None, None
        task_id = None if task_id is None else f"{task_id}{uuid.uuid4().hex[:6]}"
        try:
            got = producer.enqueue(topic, payload, num_retries=num_retries, delay_s=delay_s,
                                   timeout_s=timeout_s, task_id=task_id)
        except CLEAR_ERRORS as exc:
            errors.add(type(exc).__name__)
            assert str(exc)
            return
        accepted += 1
        stored = raw.hget(TopicKeys(NS, topic).task(got).encode("utf-8"), "payload")
        assert stored is not None, f"task {got!r} is not stored under its own id"
        assert json.loads(stored) == json.loads(json.dumps(payload)) or payload != payload

    enqueue_one()
    figures.update(inputs_fuzzed=tried, accepted=accepted, refused_with=sorted(errors))
    print(figures)


def test_enqueue_refuses_deep_nesting_with_payload_error(queue_redis: RedisProc) -> None:
    with pytest.raises(PayloadError, match="not JSON-serialisable"):
        Manager(queue_redis.url).enqueue("fuzz", nested(5000))


def write_raw_task(r: redis.Redis, topic: str, fields: dict[str, bytes | None]) -> str:
    task_id = uuid.uuid4().hex
    k = TopicKeys(NS, topic)
    values = {"id": task_id, "topic": topic, "attempts": 0, "token": 0}
    values.update({f: v for f, v in fields.items() if v is not None})
    pipe = r.pipeline(transaction=True)
    # Into the list older versions kept input in: a claim moves it (by its priority field).
    pipe.hset(k.task(task_id), mapping=values).rpush(k.legacy_input, task_id).lpush(k.wake, 1)
    pipe.execute()
    return task_id


def test_fuzz_raw_task_hashes(queue_redis: RedisProc, ledger: Ledger, pool: WorkerPool,
                              figures: dict[str, Any]) -> None:
    r = redis.Redis(port=queue_redis.port)
    pool.env.update(KUBETASKQUEUE_LEASE_TTL_S="3", KUBETASKQUEUE_NUM_WORKERS="8")
    worker = pool.start(0)
    pool.wait_started(worker)
    ids: list[str] = []

    @FUZZ
    @given(fields=raw_task_fields)
    def write_one(fields: dict[str, bytes | None]) -> None:
        ids.append(write_raw_task(r, "fuzz", fields))

    write_one()
    s = client(queue_redis.url)
    # Retries of tasks with a negative timeout or huge num_retries may take a while;
    # what must never happen is a task stuck outside every queue, or a dead worker.
    wait_until(lambda: topic_state(s, "fuzz").settled, 120, 0.2, what="every fuzzed task settled")
    state = topic_state(s, "fuzz")
    dead = set(s.lrange(TopicKeys(NS, "fuzz").dead, 0, -1))
    done = {i for i in ids if not r.exists(TopicKeys(NS, "fuzz").task(i))}
    figures.update(inputs_fuzzed=len(ids), completed=len(done), dead=len(dead),
                   fenced=state["fenced"])
    print(figures)
    assert done | dead == set(ids) and not done & dead
    assert done <= ledger.finished_ids()
    for task_id in dead:
        assert s.hget(TopicKeys(NS, "fuzz").task(task_id), "last_error")
    assert worker.alive() and pool.workers == [worker]
    assert "unexpected error" not in worker.log() and "Traceback" not in worker.log()
    assert pool.terminate_all() == {worker.pid: 0}


# Found by this suite: RecursionError from json.loads used to escape and stop the worker.
def test_deeply_nested_payload_goes_dead_without_crashing_the_worker(
        queue_redis: RedisProc, ledger: Ledger, pool: WorkerPool) -> None:
    r = redis.Redis(port=queue_redis.port)
    pool.env.update(KUBETASKQUEUE_LEASE_TTL_S="2")
    worker = pool.start(0)
    pool.wait_started(worker)
    deep = write_raw_task(r, "fuzz", {"payload": b"[" * 50_000 + b"]" * 50_000,
                                      "num_retries": b"0"})
    s = client(queue_redis.url)
    wait_until(lambda: topic_state(s, "fuzz").dead == 1 or not worker.alive(), 20,
               what="deep payload dead, or the worker down")
    assert worker.alive(), worker.log()[-600:]
    assert "malformed" in (s.hget(TopicKeys(NS, "fuzz").task(deep), "last_error") or "")


def test_fuzz_cli(queue_redis: RedisProc, figures: dict[str, Any]) -> None:
    runner = CliRunner()
    env = {"KUBETASKQUEUE_REDIS_URL": queue_redis.url, "KUBETASKQUEUE_LOG_FORMAT": "text"}
    tried, codes = 0, set()

    @FUZZ
    @given(argv=cli_argv)
    def run_one(argv: list[str]) -> None:
        nonlocal tried
        if "worker" in argv and "--help" not in argv and any(":" in a for a in argv):
            argv = [a for a in argv if a != "worker"]  # a real app would run forever
        tried += 1
        result = runner.invoke(cli, argv, env=env)
        codes.add(result.exit_code)
        assert result.exit_code in (0, 1, 2), (argv, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            argv, repr(result.exception))
        assert "Traceback" not in result.output, (argv, result.output)

    run_one()
    figures.update(inputs_fuzzed=tried, exit_codes=sorted(codes))
    print(figures)
    assert os.environ.get("KUBETASKQUEUE_REDIS_URL") != queue_redis.url  # env not leaked
