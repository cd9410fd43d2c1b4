"""End to end in headless Chromium: a real worker, a real Redis, the dashboard process.

One worker, one dashboard and one browser serve the whole module (start-up is
most of the cost); each test uses its own tasks and its own tab, so they do not
depend on each other's order.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from browser import Page
from dashboard_helpers import TOKEN, Dashboard, start_worker, stop
from helpers import RedisServer, wait_until
from kubetaskqueue import Manager
from kubetaskqueue.admin import task_state


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, chromium: Any) -> Iterator[dict[str, Any]]:
    """Redis (flushed), a worker running dashboard_app, the dashboard with actions allowed."""
    if redis_server.proc is None:
        redis_server.start()
    url = redis_server.url
    redis.Redis.from_url(url).flushall()
    worker = start_worker(url)
    server = Dashboard(url, allow_actions=True)
    try:
        yield {"url": url, "dashboard": server, "manager": Manager(url),
               "redis": redis.Redis.from_url(url, decode_responses=True)}
    finally:
        server.stop()
        stop(worker)


@pytest.fixture
def page(stack: dict[str, Any], chromium: Any) -> Iterator[Page]:
    page = Page(chromium)
    page.open(stack["dashboard"].url)
    page.expect_count("#status.status-live", 1)
    page.evaluate("window.__loadedOnce = true")  # gone if the page ever reloads
    yield page
    assert page.evaluate("window.__loadedOnce") is True
    errors = page.errors()
    page.close()
    assert errors == []


def cell(topic: str, col: str) -> str:
    return f'#topics tr[data-topic="{topic}"] td[data-col="{col}"]'


def dead_item(task_id: str) -> str:
    return f'#dead-list li[data-id="{task_id}"]'


def kill_switch(stack: dict[str, Any]) -> str:
    """A Redis key that makes dash_fragile tasks fail while it exists."""
    flag = f"test:broken:{uuid.uuid4().hex}"
    stack["redis"].set(flag, 1)
    return flag


def enqueue_doomed(stack: dict[str, Any], flag: str, **payload: Any) -> str:
    manager: Manager = stack["manager"]
    task_id = manager.enqueue("dash_fragile", {"broken_while": flag, **payload})
    wait_until(lambda: task_state(manager.store, "dash_fragile", task_id) == "dead")
    return task_id


def show_dead(page: Page, filter_text: str = "") -> None:
    page.select("#dead-topic", "dash_fragile")
    page.fill("#dead-filter", filter_text)


def test_counts_and_managers_update_live_without_reload(stack: dict[str, Any],
                                                        page: Page) -> None:
    manager: Manager = stack["manager"]
    # The states and counters are named as in `kubetaskqueue stats` (README's glossary).
    headers = ["topic", "state", "input", "scheduled", "work", "dead", "enqueued/s", "completed/s",
               "retried/s", "failed/s", "oldest ready", "completed", "throughput"]
    page.until(lambda: [" ".join(str(th.get_property("textContent")).split())
                        for th in page.elements("#topics thead th")],
               lambda seen: seen == headers, f"the topic table's headers to be {headers}")
    manager.enqueue_many("dash_idle", [1, 2, 3])  # no processor: they stay ready
    page.expect_text(cell("dash_idle", "input"), "3")
    manager.enqueue_many("dash_idle", [4, 5])
    manager.enqueue("dash_idle", 6, delay_s=600)
    page.expect_text(cell("dash_idle", "input"), "5")
    page.expect_text(cell("dash_idle", "scheduled"), "1")
    page.expect_contains(cell("dash_idle", "oldest_ready"), " s")

    manager.enqueue_many("dash_work", [{"s": 0} for _ in range(8)])
    page.expect_text(cell("dash_work", "completed"), "8")
    page.expect_attribute(cell("dash_work", "sparkline") + " svg", "data-total", "8")
    page.expect_count("#managers tbody tr", 1)
    page.expect_text('#managers tbody tr td[data-col="slots"]', "4")
    page.expect_text('#managers tbody tr td[data-col="topics"]', "dash_fragile, dash_work")


def test_dead_error_is_shown_and_requeue_from_the_page_completes(stack: dict[str, Any],
                                                                 page: Page) -> None:
    flag = kill_switch(stack)
    task_id = enqueue_doomed(stack, flag, error="disk full on /data")
    show_dead(page)
    item = dead_item(task_id)
    page.expect_text(f"{item} .error-line", "RuntimeError: disk full on /data")
    page.click(f"{item} summary")
    page.expect_contains(f"{item} .error-full", "Traceback (most recent call last)")
    page.expect_contains(item, "attempts 1 of 1")

    stack["redis"].delete(flag)  # the bug is fixed; now requeue it by hand
    page.fill("#token", TOKEN)
    page.click(f"{item} button.requeue-one")
    page.expect_contains("#confirm-text", f"Requeue task {task_id}")
    page.click("#confirm-ok")
    page.expect_text("#dead-message", "requeued 1 task(s)")
    manager: Manager = stack["manager"]
    wait_until(lambda: task_state(manager.store, "dash_fragile", task_id) == "completed")
    page.expect_count(item, 0)


def test_task_data_with_html_is_shown_as_text(stack: dict[str, Any], page: Page) -> None:
    script = "<script>window.__xss = 1</script><img src=x onerror=\"window.__xss = 2\">"
    error = "<b>bold</b><img src=x onerror=\"window.__xss = 3\">"
    task_id = enqueue_doomed(stack, kill_switch(stack), html=script, error=error)
    show_dead(page)
    item = dead_item(task_id)
    page.expect_text(f"{item} .error-line", f"RuntimeError: {error}")
    payload = json.loads(page.raw_text(f"{item} pre.payload") or "")
    assert payload["html"] == script and payload["error"] == error
    assert page.elements(f"{item} img, {item} script, {item} b") == []
    assert page.evaluate("window.__xss") is None


def test_filtered_purge_asks_first_and_leaves_the_rest(stack: dict[str, Any],
                                                       page: Page) -> None:
    flag = kill_switch(stack)
    marker = uuid.uuid4().hex[:8]
    doomed = enqueue_doomed(stack, flag, error=f"alpha {marker}")
    kept = enqueue_doomed(stack, flag, error=f"beta {marker}")
    show_dead(page, f"alpha {marker}")
    page.expect_count("#dead-list li", 1)
    page.fill("#token", TOKEN)
    page.click("#purge-matching")
    page.expect_contains("#confirm-text", f'Purge 1 dead task(s) whose error contains '
                                          f'"alpha {marker}" of topic "dash_fragile"?')
    page.click("#confirm-cancel")
    page.expect_text("#dead-message", "purge cancelled")
    page.expect_count(dead_item(doomed), 1)

    page.click("#purge-matching")
    page.click("#confirm-ok")
    page.expect_text("#dead-message", "purged 1 task(s)")
    page.expect_count("#dead-list li", 0)
    show_dead(page, marker)
    page.expect_count("#dead-list li", 1)
    page.expect_count(dead_item(kept), 1)


def test_wrong_token_is_reported_and_nothing_changes(stack: dict[str, Any], page: Page) -> None:
    task_id = enqueue_doomed(stack, kill_switch(stack), error="stays dead")
    show_dead(page, "stays dead")
    page.fill("#token", "not-the-token")
    page.click(f"{dead_item(task_id)} button.purge-one")
    page.click("#confirm-ok")
    page.expect_contains("#dead-message", "purge failed: send Authorization")
    manager: Manager = stack["manager"]
    assert task_state(manager.store, "dash_fragile", task_id) == "dead"


def test_schedules_panel_shows_what_live_managers_declare(stack: dict[str, Any],
                                                          page: Page) -> None:
    beat = Manager(stack["url"], poll_interval_s=0.2, lease_ttl_s=3.0)
    beat.register("dash_beat", lambda task: None)
    beat.schedule("dash-beat", "dash_beat", {}, every_s=0.5)
    beat.start()
    row = '#schedules tr[data-schedule="dash-beat"]'
    try:
        page.expect_text(f'{row} td[data-col="rule"]', "every 0.5s")
        page.expect_text(f'{row} td[data-col="topic"]', "dash_beat")
        page.until(lambda: page.text(f'{row} td[data-col="last_fire"]'),
                   lambda v: v is not None and re.fullmatch(
                       r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", v) is not None,
                   "a last fire time")
        page.expect_text(f'{row} td[data-col="managers"]', "1")
    finally:
        beat.stop()
    page.expect_count(row, 0)  # a stopped manager's schedules leave the panel
    page.until(lambda: page.elements("#schedules-empty")[0].is_displayed(), bool,
               "the empty-schedules line to show")


def test_pause_and_resume_a_topic_from_the_page(stack: dict[str, Any], page: Page) -> None:
    manager: Manager = stack["manager"]
    manager.enqueue_many("dash_work", [{"s": 0}])
    state = cell("dash_work", "state")
    page.expect_contains(state, "active")
    page.fill("#token", TOKEN)
    page.click(f"{state} button.pause-topic")
    page.expect_contains("#confirm-text", 'Pause topic "dash_work"?')
    page.click("#confirm-ok")
    page.expect_text("#topics-message", 'paused topic "dash_work"')
    page.expect_text(f"{state} .pill.paused", "paused")
    try:
        manager.enqueue("dash_work", {"s": 0})  # stays ready: the worker claims nothing
        page.expect_text(cell("dash_work", "input"), "1")
        assert manager.stats()["topics"]["dash_work"]["paused"] is True
    finally:
        page.click(f"{state} button.resume-topic")  # no confirmation to resume
        page.expect_text("#topics-message", 'resumed topic "dash_work"')
    page.expect_text(cell("dash_work", "input"), "0")
    page.expect_contains(state, "active")
