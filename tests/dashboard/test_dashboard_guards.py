"""The guards in front of every route: the request body cap and Cache-Control on the API.

A 64 MiB POST with a valid token must be refused with 413 without the server's
memory growing by anything like 64 MiB (the chart gives the dashboard 128 Mi).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dashboard_helpers import TOKEN, Dashboard
from kubetaskqueue import Manager, Task
from kubetaskqueue.admin import task_state
from kubetaskqueue.dashboard import MAX_BODY_BYTES
from kubetaskqueue.dashboard.app import create_app
from kubetaskqueue.store import connect
from starlette.testclient import TestClient

AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET = "card-4111-1111-1111-1111"  # in a dead task's payload and error: must never leak
BIG_BODY_BYTES = 64 * 1024 * 1024
SEND_CHUNK_BYTES = 256 * 1024
RSS_GROWTH_LIMIT_KIB = 10 * 1024


# -- the body cap and Cache-Control (in process) -------------------------------------------

def make_secret_dead(url: str) -> None:
    """One dead task in topic "jobs" whose payload and error hold SECRET."""
    m = Manager(url, num_workers=1, poll_interval_s=0.05)

    @m.processor("jobs")
    def fail(task: Task) -> None:
        raise ValueError(f"declined {task.payload['card']}")

    m.enqueue("jobs", {"card": SECRET}, task_id="secret")
    m.run(burst=True)
    assert task_state(m.store, "jobs", "secret") == "dead"


def client(url: str, host: str = "localhost:8080", **options: Any) -> TestClient:
    return TestClient(create_app(connect(url), "kubetaskqueue", allow_actions=True,
                                 token=TOKEN, **options), base_url=f"http://{host}")


@pytest.fixture
def api(redis_url: str) -> Iterator[TestClient]:
    make_secret_dead(redis_url)
    with client(redis_url) as c:
        yield c


def connect_store(url: str) -> Any:
    return Manager(url).store


def test_bodies_over_the_cap_get_413_before_anything_acts(redis_url: str) -> None:
    make_secret_dead(redis_url)
    store = connect_store(redis_url)
    cap = 1000
    with client(redis_url, max_body_bytes=cap) as c:
        path = "/api/topics/jobs/dead/requeue"
        big = json.dumps({"all": True, "pad": "x" * cap}).encode()

        def chunks() -> Iterator[bytes]:
            for i in range(0, len(big), 100):
                yield big[i:i + 100]

        for content in [big, chunks()]:
            response = c.post(path, content=content, headers=AUTH)
            assert response.status_code == 413
            assert response.json() == {"error": "the request body is larger than 1000 bytes"}
            assert response.headers["cache-control"] == "no-store"
        assert task_state(store, "jobs", "secret") == "dead"
        exact = json.dumps({"all": True, "dry_run": True}).encode().ljust(cap)
        assert c.post(path, content=exact, headers=AUTH).json()["count"] == 1
    assert MAX_BODY_BYTES == 1024 * 1024


def test_every_api_answer_says_no_store_and_the_page_no_cache(api: TestClient) -> None:
    for path in ["/api/info", "/api/state", "/api/topics/jobs/dead", "/api/topics/nope/dead",
                 "/api/topics/jobs/dead?limit=x"]:
        response = api.get(path)
        assert response.headers["cache-control"] == "no-store", path
    assert api.post("/api/topics/jobs/dead/purge", json={"all": True, "dry_run": True},
                    headers=AUTH).headers["cache-control"] == "no-store"
    assert api.get("/").headers["cache-control"] == "no-cache"


# -- the body cap on a real server --------------------------------------------------------

def status_kib(pid: int, field: str) -> int:
    """A ``VmRSS``-style line of /proc/<pid>/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM (Linux >= 4.0: ``echo 5 > clear_refs``), so it shows this request's peak."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def post_streamed(port: int, path: str, size: int, *, chunked: bool,
                  after_chunk: Callable[[], None] = lambda: None) -> tuple[int, bytes, int]:
    """POST ``size`` bytes, streamed in chunks, reading the answer while still sending.

    Returns (status, the response head and what body came with it, bytes of body sent).
    Stops sending as soon as the answer's head arrives or the server closes.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n")
    head += "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {size}\r\n"
    answer = bytearray()
    answered = threading.Event()

    def read() -> None:
        try:
            while b"\r\n\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer.extend(data)
            sock.settimeout(2)
            while len(answer) < 4096 and (data := sock.recv(65536)):  # the short body too
                answer.extend(data)
        except OSError:
            pass
        finally:
            answered.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    sent = 0
    block = b"x" * SEND_CHUNK_BYTES
    try:
        sock.sendall(f"{head}\r\n".encode())
        while sent < size and not answered.is_set():
            frame = block[:size - sent]
            sock.sendall(f"{len(frame):x}\r\n".encode() + frame + b"\r\n" if chunked else frame)
            sent += len(frame)
            after_chunk()
        if chunked and sent == size and not answered.is_set():
            sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the server answered and closed while we were still sending: expected
    reader.join(30)
    sock.close()
    assert answer, "no answer from the server"
    status = int(answer.split(b" ", 2)[1])
    return status, bytes(answer), sent


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_64_mib_body_is_refused_413_without_growing_the_server(redis_url: str,
                                                                 chunked: bool) -> None:
    Manager(redis_url).enqueue("jobs", {})  # the topic exists: the body is what gets judged
    server = Dashboard(redis_url, allow_actions=True)
    try:
        pid = server.proc.pid
        before_kib = status_kib(pid, "VmRSS")
        exact_peak = reset_peak_rss(pid)
        samples = [before_kib]  # VmRSS after every chunk sent, in case VmHWM cannot be reset
        status, answer, sent = post_streamed(
            server.port, "/api/topics/jobs/dead/requeue", BIG_BODY_BYTES, chunked=chunked,
            after_chunk=lambda: samples.append(status_kib(pid, "VmRSS")))
        after_kib = status_kib(pid, "VmRSS")
        peak_kib = max(*samples, after_kib, status_kib(pid, "VmHWM") if exact_peak else 0)
        grew_kib = peak_kib - before_kib
        print(f"\n{'chunked' if chunked else 'content-length'}: RSS before {before_kib} KiB, "
              f"peak {peak_kib} KiB, after {after_kib} KiB (+{grew_kib} KiB); "
              f"{sent} bytes sent; status {status}")
        assert status == 413, answer[:500]
        assert b'"error"' in answer and b"1048576" in answer
        assert grew_kib < RSS_GROWTH_LIMIT_KIB
        # The server is still serving.
        assert server.proc.poll() is None
    finally:
        server.stop()
