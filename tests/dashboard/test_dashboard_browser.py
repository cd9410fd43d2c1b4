"""End to end in headless Chromium: a real worker, a real Redis, the dashboard process.

One worker, one dashboard and one browser serve the whole module (start-up is
most of the cost); each test uses its own tasks, so they do not depend on each
other's order.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from dashboard_helpers import TOKEN, Dashboard, start_worker, stop
from helpers import RedisServer, wait_until
from kubetaskqueue import Manager
from kubetaskqueue.admin import task_state

EXPECT_TIMEOUT_MS = 10_000


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, chromium: Any) -> Iterator[dict[str, Any]]:
    """Redis (flushed), a worker running dashboard_app, the dashboard with actions allowed."""
    from playwright.sync_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
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
def page(stack: dict[str, Any], chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(stack["dashboard"].url)
    page.locator("#status.status-live").wait_for()
    page.evaluate("window.__loadedOnce = true")  # gone if the page ever reloads
    yield page
    assert page.evaluate("window.__loadedOnce") is True
    context.close()
    assert errors == []


def cell(page: Any, topic: str, col: str) -> Any:
    return page.locator(f'#topics tr[data-topic="{topic}"] td[data-col="{col}"]')


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


def show_dead(page: Any, filter_text: str = "") -> None:
    page.select_option("#dead-topic", "dash_fragile")
    page.fill("#dead-filter", filter_text)


def test_counts_and_managers_update_live_without_reload(stack: dict[str, Any],
                                                        page: Any) -> None:
    from playwright.sync_api import expect

    manager: Manager = stack["manager"]
    # The states and counters are named as in `kubetaskqueue stats` (README's glossary).
    expect(page.locator("#topics thead th")).to_have_text([
        "topic", "input", "scheduled", "work", "dead", "enqueued/s", "completed/s",
        "retried/s", "failed/s", "oldest ready", "completed", "throughput"])
    manager.enqueue_many("dash_idle", [1, 2, 3])  # no processor: they stay ready
    expect(cell(page, "dash_idle", "input")).to_have_text("3")
    manager.enqueue_many("dash_idle", [4, 5])
    manager.enqueue("dash_idle", 6, delay_s=600)
    expect(cell(page, "dash_idle", "input")).to_have_text("5")
    expect(cell(page, "dash_idle", "scheduled")).to_have_text("1")
    expect(cell(page, "dash_idle", "oldest_ready")).to_contain_text(" s")

    manager.enqueue_many("dash_work", [{"s": 0} for _ in range(8)])
    expect(cell(page, "dash_work", "completed")).to_have_text("8")
    expect(cell(page, "dash_work", "sparkline").locator("svg")).to_have_attribute(
        "data-total", "8")
    worker_row = page.locator("#managers tbody tr")
    expect(worker_row).to_have_count(1)
    expect(worker_row.locator('td[data-col="slots"]')).to_have_text("4")
    expect(worker_row.locator('td[data-col="topics"]')).to_have_text("dash_fragile, dash_work")


def test_dead_error_is_shown_and_requeue_from_the_page_completes(stack: dict[str, Any],
                                                                 page: Any) -> None:
    from playwright.sync_api import expect

    flag = kill_switch(stack)
    task_id = enqueue_doomed(stack, flag, error="disk full on /data")
    show_dead(page)
    item = page.locator(f'#dead-list li[data-id="{task_id}"]')
    expect(item.locator(".error-line")).to_have_text("RuntimeError: disk full on /data")
    item.locator("summary").click()
    expect(item.locator(".error-full")).to_contain_text("Traceback (most recent call last)")
    expect(item).to_contain_text("attempts 1 of 1")

    stack["redis"].delete(flag)  # the bug is fixed; now requeue it by hand
    page.fill("#token", TOKEN)
    item.locator("button.requeue-one").click()
    expect(page.locator("#confirm-text")).to_contain_text(f"Requeue task {task_id}")
    page.click("#confirm-ok")
    expect(page.locator("#dead-message")).to_have_text("requeued 1 task(s)")
    manager: Manager = stack["manager"]
    wait_until(lambda: task_state(manager.store, "dash_fragile", task_id) == "completed")
    expect(item).to_have_count(0)


def test_task_data_with_html_is_shown_as_text(stack: dict[str, Any], page: Any) -> None:
    from playwright.sync_api import expect

    script = "<script>window.__xss = 1</script><img src=x onerror=\"window.__xss = 2\">"
    error = "<b>bold</b><img src=x onerror=\"window.__xss = 3\">"
    task_id = enqueue_doomed(stack, kill_switch(stack), html=script, error=error)
    show_dead(page)
    item = page.locator(f'#dead-list li[data-id="{task_id}"]')
    expect(item.locator(".error-line")).to_have_text(f"RuntimeError: {error}")
    payload = json.loads(item.locator("pre.payload").text_content())
    assert payload["html"] == script and payload["error"] == error
    assert item.locator("img, script, b").count() == 0
    assert page.evaluate("window.__xss") is None


def test_filtered_purge_asks_first_and_leaves_the_rest(stack: dict[str, Any],
                                                       page: Any) -> None:
    from playwright.sync_api import expect

    flag = kill_switch(stack)
    marker = uuid.uuid4().hex[:8]
    doomed = enqueue_doomed(stack, flag, error=f"alpha {marker}")
    kept = enqueue_doomed(stack, flag, error=f"beta {marker}")
    show_dead(page, f"alpha {marker}")
    expect(page.locator("#dead-list li")).to_have_count(1)
    page.fill("#token", TOKEN)
    page.click("#purge-matching")
    expect(page.locator("#confirm-text")).to_contain_text(
        f'Purge 1 dead task(s) whose error contains "alpha {marker}" of topic "dash_fragile"?')
    page.click("#confirm-cancel")
    expect(page.locator("#dead-message")).to_have_text("purge cancelled")
    expect(page.locator(f'#dead-list li[data-id="{doomed}"]')).to_have_count(1)

    page.click("#purge-matching")
    page.click("#confirm-ok")
    expect(page.locator("#dead-message")).to_have_text("purged 1 task(s)")
    expect(page.locator("#dead-list li")).to_have_count(0)
    show_dead(page, marker)
    expect(page.locator("#dead-list li")).to_have_count(1)
    expect(page.locator(f'#dead-list li[data-id="{kept}"]')).to_have_count(1)


def test_wrong_token_is_reported_and_nothing_changes(stack: dict[str, Any], page: Any) -> None:
    from playwright.sync_api import expect

    task_id = enqueue_doomed(stack, kill_switch(stack), error="stays dead")
    show_dead(page, "stays dead")
    page.fill("#token", "not-the-token")
    page.locator(f'#dead-list li[data-id="{task_id}"] button.purge-one').click()
    page.click("#confirm-ok")
    expect(page.locator("#dead-message")).to_contain_text("purge failed: send Authorization")
    manager: Manager = stack["manager"]
    assert task_state(manager.store, "dash_fragile", task_id) == "dead"


def test_schedules_panel_shows_what_live_managers_declare(stack: dict[str, Any],
                                                          page: Any) -> None:
    from playwright.sync_api import expect

    beat = Manager(stack["url"], poll_interval_s=0.2, lease_ttl_s=3.0)
    beat.register("dash_beat", lambda task: None)
    beat.schedule("dash-beat", "dash_beat", {}, every_s=0.5)
    beat.start()
    row = page.locator('#schedules tr[data-schedule="dash-beat"]')
    try:
        expect(row.locator('td[data-col="rule"]')).to_have_text("every 0.5s")
        expect(row.locator('td[data-col="topic"]')).to_have_text("dash_beat")
        expect(row.locator('td[data-col="last_fire"]')).to_have_text(
            re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$"))
        expect(row.locator('td[data-col="managers"]')).to_have_text("1")
    finally:
        beat.stop()
    expect(row).to_have_count(0)  # a stopped manager's schedules leave the panel
    expect(page.locator("#schedules-empty")).to_be_visible()
