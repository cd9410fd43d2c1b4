"""The chart's example worker app serves what `helm test` enqueues (embedded store)."""

from __future__ import annotations

import json
import uuid

import pytest
from chartrender import CHART, load_file_module, one, render
from kubetaskqueue.admin import wait_for_task


def test_example_app_completes_the_helm_test_task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBETASKQUEUE_REDIS_URL", f"memory://chart-{uuid.uuid4().hex}")
    monkeypatch.setenv("KUBETASKQUEUE_HTTP_PORT", "0")
    app = load_file_module("kubetaskqueue_example", CHART / "files" / "kubetaskqueue_example.py")

    [pod] = [o for o in render() if o["kind"] == "Pod"]
    _, _, topic, payload, _, _ = pod["spec"]["containers"][0]["command"]
    manager = app.manager
    task_id = manager.enqueue(topic, json.loads(payload))
    manager.enqueue(topic, {"sleep_s": 0.01})
    manager.run(burst=True)
    assert wait_for_task(manager.store, topic, task_id, 1.0) == "completed"
    worker = one(render(), "Deployment", "demo-kubetaskqueue-worker")
    assert worker["spec"]["template"]["spec"]["containers"][0]["command"][-1] == (
        "kubetaskqueue_example:manager")
