"""The dashboard's JSON API against a real redis-server, through Starlette's TestClient."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from dashboard_helpers import TOKEN
from helpers import RedisServer, wait_until
from kubetaskqueue import Manager, Task
from kubetaskqueue.connection import connect
from kubetaskqueue.dashboard.app import create_app
from kubetaskqueue.dashboard.live import Rates, Throughput
from starlette.testclient import TestClient

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def client_for(url: str, **options: Any) -> TestClient:
    # A Host the dashboard serves by default (TestClient's own "testserver" is not one).
    return TestClient(create_app(connect(url), "kubetaskqueue", **options),
                      base_url="http://localhost:8080")


@pytest.fixture
def api(redis_url: str) -> Iterator[TestClient]:
    with client_for(redis_url, allow_actions=True, token=TOKEN) as client:
        yield client


def topic(state: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in state["topics"] if t["name"] == name)


def make_dead(url: str, errors: dict[str, str]) -> Manager:
    """One dead task per id in topic "jobs", each failing with its own error message."""
    m = Manager(url, num_workers=1, poll_interval_s=0.05)  # one at a time: dead in order

    @m.processor("jobs")
    def fail(task: Task) -> None:
        raise ValueError(errors[task.id])

    for task_id in errors:
        m.enqueue("jobs", {"n": task_id}, task_id=task_id)
    m.run(burst=True)
    return m


def test_state_shows_counts_ages_and_live_managers(redis_url: str, api: TestClient) -> None:
    m = Manager(redis_url, num_workers=3, poll_interval_s=0.05)
    m.enqueue_many("idle", [1, 2, 3])
    m.enqueue("idle", 4, delay_s=600)
    state = api.get("/api/state").json()
    idle = topic(state, "idle")
    assert (idle["input"], idle["scheduled"], idle["work"], idle["dead"]) == (3, 1, 0, 0)
    assert idle["oldest_ready_age_s"] >= 0 and idle["counters"]["enqueued"] == 4
    assert state["managers"] == [] and state["error"] is None

    @m.processor("busy")
    def noop(task: Task) -> None:
        pass

    m.start()
    try:
        managers = wait_until(lambda: api.get("/api/state").json()["managers"])
        assert len(managers) == 1
        me = managers[0]
        assert me["slots"] == 3 and me["busy"] + me["idle"] == 3 and me["topics"] == ["busy"]
        assert me["pod"] and me["heartbeat_age_s"] < 5
    finally:
        m.stop()


def test_sparkline_counts_completions_per_minute_and_rates_move(redis_url: str,
                                                                api: TestClient) -> None:
    m = Manager(redis_url, poll_interval_s=0.05)

    @m.processor("fast")
    def ok(task: Task) -> None:
        pass

    m.enqueue("fast", 0)  # the rates' base is the first sample that saw the topic
    wait_until(lambda: any(t["name"] == "fast" for t in api.get("/api/state").json()["topics"]))
    m.enqueue_many("fast", list(range(1, 7)))
    m.run(burst=True)
    state = wait_until(lambda: (s := api.get("/api/state").json())
                       and sum(topic(s, "fast")["completions_per_min"]) == 7 and s)
    fast = topic(state, "fast")
    series = fast["completions_per_min"]
    # All 7 finished within seconds: in the last two buckets (a minute boundary may
    # fall between them, or between the last of them and this read).
    assert len(series) == 30 and sum(series[-2:]) == 7
    assert fast["rates_per_s"]["completed"] > 0 and fast["rates_per_s"]["enqueued"] > 0
    assert state["sparkline_bucket_s"] == 60


def test_rates_are_counter_deltas_over_the_window() -> None:
    rates = Rates(window_s=10)
    assert rates.update("t", 100.0, {"completed": 5})["completed"] == 0.0
    assert rates.update("t", 102.0, {"completed": 25})["completed"] == 10.0
    assert rates.update("t", 112.0, {"completed": 45})["completed"] == 2.0  # 20 in 10 s
    assert rates.update("t", 113.0, {"completed": 0})["completed"] == 0.0  # reset by hand


def test_throughput_keeps_thirty_minutes_oldest_first() -> None:
    spark = Throughput(bucket_s=60, buckets=30)
    for when in (60 * 100 + 1, 60 * 100 + 59, 60 * 129, 60 * 50):
        spark.add("t", when)
    series = spark.series("t", now=60 * 129 + 30)
    assert len(series) == 30 and series[0] == 2 and series[-1] == 1 and sum(series) == 3


def test_dead_list_shows_error_traceback_payload_and_filters(redis_url: str,
                                                             api: TestClient) -> None:
    make_dead(redis_url, {"a": "disk full", "b": "timeout talking to S3", "c": "disk full"})
    body = api.get("/api/topics/jobs/dead").json()
    assert [t["id"] for t in body["tasks"]] == ["c", "b", "a"] and body["more"] is False
    a = body["tasks"][2]
    assert a["payload"] == '{"n":"a"}' and a["attempts"] == 1 and a["num_retries"] == 0
    assert a["last_error"].startswith("Traceback") and "ValueError: disk full" in a["last_error"]
    assert a["enqueued_at"] <= a["failed_at"] == a["dead_at"]
    filtered = api.get("/api/topics/jobs/dead", params={"error": "S3"}).json()
    assert [t["id"] for t in filtered["tasks"]] == ["b"]
    limited = api.get("/api/topics/jobs/dead", params={"limit": 2}).json()
    assert len(limited["tasks"]) == 2 and limited["more"] is True


def test_requeue_one_a_filtered_set_and_all_then_purge(redis_url: str, api: TestClient) -> None:
    errors = {"a": "disk full", "b": "timeout", "c": "disk full", "d": "timeout"}
    make_dead(redis_url, errors)

    def post(action: str, body: dict[str, Any]) -> dict[str, Any]:
        response = api.post(f"/api/topics/jobs/dead/{action}", json=body, headers=AUTH)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def dead_ids() -> set[str]:
        return {t["id"] for t in api.get("/api/topics/jobs/dead").json()["tasks"]}

    assert post("requeue", {"all": True, "error": "disk", "dry_run": True})["count"] == 2
    assert dead_ids() == set(errors)
    assert post("requeue", {"ids": ["a"]}) == {"topic": "jobs", "action": "requeue",
                                               "count": 1, "dry_run": False}
    assert post("requeue", {"all": True, "error": "disk"})["count"] == 1  # c; a is not dead
    assert dead_ids() == {"b", "d"}
    assert topic(api.get("/api/state").json(), "jobs")["input"] == 2
    assert post("purge", {"ids": ["b", "not-there"]})["count"] == 1
    assert post("purge", {"all": True})["count"] == 1
    assert dead_ids() == set()


def test_actions_are_refused_when_read_only(redis_url: str) -> None:
    make_dead(redis_url, {"a": "boom"})
    with client_for(redis_url) as client:
        response = client.post("/api/topics/jobs/dead/requeue", json={"all": True},
                               headers=AUTH)
        assert response.status_code == 403
        assert response.json() == {
            "error": "actions are off: start the dashboard with --allow-actions"}
        assert client.get("/api/info").json()["actions_enabled"] is False
        assert len(client.get("/api/topics/jobs/dead").json()["tasks"]) == 1


@pytest.mark.parametrize("header", [None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}",
                                    f"Bearer {TOKEN}x"])
def test_actions_need_the_bearer_token(redis_url: str, api: TestClient,
                                       header: str | None) -> None:
    make_dead(redis_url, {"a": "boom"})
    headers = {"Authorization": header} if header else {}
    response = api.post("/api/topics/jobs/dead/purge", json={"all": True}, headers=headers)
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert "KUBETASKQUEUE_DASHBOARD_TOKEN" in response.json()["error"]
    assert len(api.get("/api/topics/jobs/dead").json()["tasks"]) == 1


def test_pause_and_resume_a_topic_with_the_token(redis_url: str, api: TestClient) -> None:
    m = Manager(redis_url)
    m.enqueue("jobs", {})

    def paused() -> bool:
        return bool(topic(api.get("/api/state").json(), "jobs")["paused"])

    assert paused() is False
    response = api.post("/api/topics/jobs/pause", headers=AUTH)
    assert response.json() == {"topic": "jobs", "paused": True, "changed": True}
    assert paused() is True and m.stats()["topics"]["jobs"]["paused"] is True
    assert api.post("/api/topics/jobs/pause", headers=AUTH).json()["changed"] is False
    assert api.post("/api/topics/jobs/resume").status_code == 401  # no token
    assert paused() is True
    assert api.post("/api/topics/jobs/resume", headers=AUTH).json()["changed"] is True
    assert paused() is False
    assert api.post("/api/topics/nope/pause", headers=AUTH).status_code == 404
    with client_for(redis_url) as read_only:
        assert read_only.post("/api/topics/jobs/pause", headers=AUTH).status_code == 403
        assert topic(read_only.get("/api/state").json(), "jobs")["paused"] is False


@pytest.mark.parametrize(("path", "body", "status", "error"), [
    ("/api/topics/jobs/dead/requeue", {"ids": ["a"], "all": True}, 400,
     'give "ids" (a non-empty list) or "all": true, not both'),
    ("/api/topics/jobs/dead/requeue", {}, 400,
     'give "ids" (a non-empty list) or "all": true, not both'),
    ("/api/topics/jobs/dead/requeue", {"ids": "a"}, 400, '"ids" must be a list of task id strings'),
    ("/api/topics/jobs/dead/purge", ["a"], 400,
     'the body must be a JSON object, e.g. {"ids": ["..."]}'),
    ("/api/topics/nope/dead/purge", {"all": True}, 404,
     "no topic 'nope' in namespace 'kubetaskqueue'"),
    ("/api/topics/bad topic/dead/purge", {"all": True}, 400, None),
])
def test_bad_requests_say_what_is_wrong(redis_url: str, api: TestClient, path: str, body: Any,
                                        status: int, error: str | None) -> None:
    Manager(redis_url).enqueue("jobs", {})
    response = api.post(path, json=body, headers=AUTH)
    assert response.status_code == status
    if error is not None:
        assert response.json()["error"] == error
    assert api.get("/api/topics/jobs/dead", params={"limit": "x"}).status_code == 400


def test_page_and_api_send_a_strict_content_security_policy(api: TestClient) -> None:
    page = api.get("/")
    assert page.status_code == 200 and "<title>kubetaskqueue dashboard</title>" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert api.get("/static/dashboard.js").headers["content-type"].startswith(
        "text/javascript")
    assert "innerHTML" not in api.get("/static/dashboard.js").text
    assert "content-security-policy" in api.get("/api/state").headers


def test_create_app_refuses_actions_without_a_token(redis_url: str) -> None:
    with pytest.raises(ValueError, match="KUBETASKQUEUE_DASHBOARD_TOKEN"):
        create_app(connect(redis_url), "kubetaskqueue", allow_actions=True, token=" ")


def test_redis_down_answers_503_with_the_reason(own_redis: RedisServer) -> None:
    with client_for(own_redis.url) as client:
        own_redis.kill()
        response = client.get("/api/topics/jobs/dead")
        assert response.status_code == 503
        assert response.json()["error"].startswith("cannot reach Redis: ")
