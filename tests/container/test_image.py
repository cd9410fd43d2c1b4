"""The kubetaskqueue image (worker/Dockerfile, built by .ci/build-image), run with podman.

Skipped unless KUBETASKQUEUE_IMAGE names a local image (.ci/run builds and names
localhost/kubetaskqueue:ci); with KUBETASKQUEUE_REQUIRE_IMAGE=1 (.ci/run sets it) a
missing podman or image fails instead. Every container here runs as the chart runs
the pods: read-only root filesystem, uid 65532, all capabilities dropped,
no-new-privileges; only a tmpfs /tmp is writable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import tomllib
import urllib.request
import uuid
from pathlib import Path

import pytest
from helpers import free_port, wait_until
from kubetaskqueue import Manager
from kubetaskqueue.admin import task_state

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_APP = ROOT / "charts/kubetaskqueue/files/kubetaskqueue_example.py"  # the chart's app
# Without these, podman run fails on these machines (their default limits are too high
# for the OCI runtime); the values are what a pod usually gets anyway.
ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
HARDENED = ["--read-only", "--user", "65532:65532", "--cap-drop=ALL",
            "--security-opt", "no-new-privileges", "--tmpfs", "/tmp"]
# The venv: 61 MB with the operator on lightkube (the kubernetes client alone was 125 MB).
VENV_MAX_MB = 100


def _missing(reason: str) -> None:
    if os.environ.get("KUBETASKQUEUE_REQUIRE_IMAGE") == "1":
        pytest.fail(f"{reason} (KUBETASKQUEUE_REQUIRE_IMAGE=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def image() -> str:
    name = os.environ.get("KUBETASKQUEUE_IMAGE", "")
    if not name:
        _missing("KUBETASKQUEUE_IMAGE is not set: build the image (.ci/build-image) and name it")
    if shutil.which("podman") is None:
        _missing("podman not found (apt-get install podman; .ci/build-image does this)")
    if subprocess.run(["podman", "image", "exists", name]).returncode != 0:
        _missing(f"image {name} not found: build it with .ci/build-image {name}")
    return name


def run(image: str, *command: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """One command in a fresh hardened container without network."""
    return subprocess.run(["podman", "run", "--rm", *ULIMITS, *HARDENED, "--network", "none",
                           image, *command], capture_output=True, text=True, timeout=timeout_s)


def test_version(image: str) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = run(image, "kubetaskqueue", "--version")
    assert result.returncode == 0, result.stderr
    assert version in result.stdout.split(), result.stdout


def test_operator_and_dashboard_are_in_the_image(image: str) -> None:
    result = run(image, "kubetaskqueue-operator", "--help")
    assert result.returncode == 0, result.stdout + result.stderr
    result = run(image, "python", "-c", "import kubetaskqueue.dashboard.app")
    assert result.returncode == 0, result.stderr


def test_image_is_lean(image: str) -> None:
    """Runs as 65532 by default; no installer nor dependencies' test suites in the venv."""
    user = subprocess.run(["podman", "image", "inspect", "--format", "{{.Config.User}}", image],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert user == "65532:65532"
    probe = """
import glob, importlib.util, json, subprocess, sys
site = glob.glob(sys.prefix + "/lib/python3*/site-packages")[0]
print(json.dumps({
    "prefix": sys.prefix,
    "installers": [m for m in ("pip", "setuptools", "wheel") if importlib.util.find_spec(m)],
    "tests": glob.glob(site + "/*/tests"),
    "venv_mb": int(subprocess.check_output(["du", "-sm", sys.prefix]).split()[0]),
}))
"""
    result = run(image, "python", "-c", probe)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["prefix"] == "/opt/venv"
    assert found["installers"] == []
    assert found["tests"] == []
    assert found["venv_mb"] <= VENV_MAX_MB, f"venv {found['venv_mb']} MB"


def test_hardened_worker_runs_a_task_and_exits_0_on_sigterm(image: str, redis_url: str) -> None:
    """The chart's example app in the image against a redis-server on the host: one task
    done, then SIGTERM while a second one runs; it finishes it and exits 0."""
    producer = Manager(redis_url)
    first = producer.enqueue("example", {"step": "first"})
    http_port = free_port()
    name = f"kubetaskqueue-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["podman", "run", "--detach", "--name", name, *ULIMITS, *HARDENED, "--network", "host",
         "--volume", f"{EXAMPLE_APP}:/app/kubetaskqueue_example.py:ro",
         "--env", f"KUBETASKQUEUE_REDIS_URL={redis_url}",
         "--env", f"KUBETASKQUEUE_HTTP_PORT={http_port}",
         "--env", "KUBETASKQUEUE_LOG_FORMAT=text",
         image, "kubetaskqueue", "worker", "kubetaskqueue_example:manager"],
        check=True, capture_output=True, timeout=60)
    try:
        wait_until(lambda: task_state(producer.store, "example", first) == "completed",
                   timeout_s=60, interval_s=0.2, what="the first task completed in the container")
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=5) as resp:
            assert resp.status == 200

        second = producer.enqueue("example", {"sleep_s": 2})
        wait_until(lambda: producer.stats()["topics"]["example"]["work"] == 1,
                   timeout_s=30, interval_s=0.05, what="the second task running")
        subprocess.run(["podman", "kill", "--signal", "TERM", name], check=True,
                       capture_output=True, timeout=30)
        started = time.monotonic()
        waited = subprocess.run(["podman", "wait", name], capture_output=True, text=True,
                                timeout=60)
        took_s = time.monotonic() - started
        assert waited.stdout.strip() == "0", f"exit code {waited.stdout!r} {waited.stderr}"
        assert took_s < 30  # the 2 s task, not the 25 s grace period
        assert task_state(producer.store, "example", second) == "completed"
        stats = producer.stats()["topics"]["example"]
        assert (stats["completed"], stats["failed"], stats["work"], stats["input"]) == (2, 0, 0, 0)
    finally:
        logs = subprocess.run(["podman", "logs", name], capture_output=True, text=True)
        print(logs.stdout, logs.stderr)  # shown when the test fails
        subprocess.run(["podman", "rm", "--force", name], capture_output=True)
