"""The guards in front of every route, on real servers: the Host check (DNS rebinding),
the request body cap, Cache-Control on the API, and the default bind address.

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

import httpx2 as httpx
import pytest
from dashboard_helpers import TOKEN, Dashboard
from kubetaskqueue import Manager, Task
from kubetaskqueue.admin import task_state
from kubetaskqueue.connection import connect
from kubetaskqueue.dashboard import MAX_BODY_BYTES, allowed_hosts
from kubetaskqueue.dashboard.app import create_app
from starlette.testclient import TestClient

AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET = "card-4111-1111-1111-1111"  # in a dead task's payload and error: must never leak
FOREIGN_HOSTS = ["evil.example", "evil.example:8080", "localhost.evil.example",
                 "127.0.0.1.evil.example:8080", "[::2]:8080", "0.0.0.0:8080"]
BIG_BODY_BYTES = 64 * 1024 * 1024
SEND_CHUNK_BYTES = 256 * 1024
RSS_GROWTH_LIMIT_KIB = 10 * 1024


# -- the Host check -------------------------------------------------------------------------

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


REQUESTS = [("GET", "/"), ("GET", "/static/dashboard.js"), ("GET", "/static/nope.css"),
            ("GET", "/favicon.ico"), ("GET", "/healthz"), ("GET", "/api/info"),
            ("GET", "/api/state"), ("GET", "/api/topics/jobs/dead"), ("GET", "/nowhere"),
            ("POST", "/api/topics/jobs/dead/requeue"), ("POST", "/api/topics/jobs/dead/purge")]


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
def test_a_foreign_host_gets_400_and_no_data_on_any_path(redis_url: str, api: TestClient,
                                                         host: str) -> None:
    for method, path in REQUESTS:
        response = api.request(method, path, headers={"Host": host, **AUTH},
                               json={"all": True} if method == "POST" else None)
        assert (response.status_code, response.text) == (400, "Invalid host header"), (
            method, path)
        assert SECRET not in response.text and "content-security-policy" in response.headers
    assert task_state(connect_store(redis_url), "jobs", "secret") == "dead"  # nothing acted
    # The same requests with a local Host are served (the dead task holds SECRET).
    assert SECRET in api.get("/api/topics/jobs/dead").text


def connect_store(url: str) -> Any:
    return Manager(url).store


@pytest.mark.parametrize("host", ["localhost", "localhost:8080", "LocalHost:1", "127.0.0.1",
                                  "127.0.0.1:8080", "[::1]", "[::1]:8080"])
def test_local_names_pass_with_or_without_a_port_and_only_they(redis_url: str,
                                                              host: str) -> None:
    make_secret_dead(redis_url)
    with client(redis_url, host) as c:
        assert SECRET in c.get("/api/topics/jobs/dead").text
        assert c.get("/").status_code == 200
        # Exact names, not prefixes or suffixes: a local name inside a foreign one is foreign.
        for foreign in ["localhost.evil.example", "127.0.0.1.evil.example", "evil-localhost",
                        "evil.localhost.example:8080"]:
            assert c.get("/api/info", headers={"Host": foreign}).status_code == 400, foreign


def test_configured_hosts_and_wildcards_pass_and_nothing_else(redis_url: str) -> None:
    hosts = allowed_hosts(["queues.example,  dash.jobs.svc", "*.corp.example"], "0.0.0.0")
    with client(redis_url, allowed_hosts=hosts) as c:
        for host in ["queues.example", "QUEUES.example:443", "dash.jobs.svc:8080",
                     "a.corp.example", "a.b.corp.example:80", "0.0.0.0:8080", "localhost:1"]:
            assert c.get("/api/info", headers={"Host": host}).status_code == 200, host
        for host in ["corp.example", "queues.example.evil", "dash.jobs", "evil.example", ""]:
            assert c.get("/api/info", headers={"Host": host}).status_code == 400, host
    with client(redis_url, "anything.example", allowed_hosts=allowed_hosts(["*"])) as c:
        assert c.get("/api/info").status_code == 200  # '*' turns the check off


def test_allowed_hosts_are_normalised_and_bad_ones_refused() -> None:
    assert allowed_hosts() == ["localhost", "127.0.0.1", "[::1]"]
    assert allowed_hosts(["A.example, b.example", " ", "", "::1", "[FD00::0:1]"], "::") == [
        "localhost", "127.0.0.1", "[::1]", "a.example", "b.example", "[fd00::1]", "[::]"]
    assert allowed_hosts(["a.example", "*"], "127.0.0.1") == ["*"]
    for bad, why in [("a.example:8080", "without a port"), ("http://a.example", "not a URL"),
                     ("a..example", "not a host name"), ("*a.example", "not a host name"),
                     ("a.*.example", "not a host name")]:
        with pytest.raises(ValueError, match=why):
            allowed_hosts([bad])


def test_the_real_server_refuses_a_foreign_host_on_the_stream_too(redis_url: str) -> None:
    make_secret_dead(redis_url)
    server = Dashboard(redis_url, args=("--allowed-host", "queues.example"))
    try:
        def get(path: str, host: str) -> tuple[int, str, httpx.Headers]:
            with httpx.stream("GET", f"{server.url}{path}", headers={"Host": host},
                              timeout=10) as response:
                if response.status_code == 200 and path == "/api/stream":
                    return 200, next(response.iter_lines()), response.headers
                return response.status_code, response.read().decode(), response.headers

        for path in ["/api/stream", "/api/topics/jobs/dead", "/"]:
            for host in FOREIGN_HOSTS:
                assert get(path, host)[:2] == (400, "Invalid host header"), (path, host)
        for host in [f"localhost:{server.port}", f"127.0.0.1:{server.port}",
                     f"[::1]:{server.port}", "queues.example"]:
            status, first_line, headers = get("/api/stream", host)
            assert (status, first_line) == (200, "retry: 2000"), host
            assert headers["cache-control"] == "no-store"
        assert SECRET in get("/api/topics/jobs/dead", "queues.example")[1]
    finally:
        server.stop()


def test_allowed_hosts_come_from_the_comma_separated_variable(redis_url: str) -> None:
    server = Dashboard(redis_url, KUBETASKQUEUE_DASHBOARD_ALLOWED_HOSTS=(
        "dash, dash.jobs,dash.jobs.svc , dash.jobs.svc.cluster.local"))
    try:
        for host in ["dash", "dash.jobs:8080", "dash.jobs.svc", "dash.jobs.svc.cluster.local"]:
            assert httpx.get(f"{server.url}/api/info", headers={"Host": host}).status_code == 200
        assert httpx.get(f"{server.url}/api/info",
                         headers={"Host": "dash.evil"}).status_code == 400
    finally:
        server.stop()


def test_a_rebinding_page_in_chromium_reads_nothing(redis_url: str, start_browser: Any) -> None:
    """The browser resolves evil.example to this machine, as after a DNS rebinding: the
    page and its same-origin fetches reach the dashboard with Host evil.example."""
    from browser import Page

    make_secret_dead(redis_url)
    server = Dashboard(redis_url)
    driver = start_browser(800, 600, "--host-resolver-rules=MAP evil.example 127.0.0.1")
    try:
        page = Page(driver)
        driver.get(f"http://evil.example:{server.port}/api/topics/jobs/dead")
        assert page.evaluate(
            "performance.getEntriesByType('navigation')[0].responseStatus") == 400
        assert page.text("body") == "Invalid host header"
        read = page.evaluate("fetch('/api/topics/jobs/dead').then("
                             "async (r) => [r.status, await r.text()])")
        assert read == [400, "Invalid host header"]
        # The same browser, through a name the dashboard serves, does read it.
        driver.get(f"http://localhost:{server.port}/api/topics/jobs/dead")
        assert SECRET in (page.text("body") or "")
    finally:
        driver.quit()
        server.stop()


# -- the body cap and Cache-Control (in process) --------------------------------------------

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


# -- the bind address -------------------------------------------------------------------------

def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp{,6} writes them) listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_without_host_it_listens_on_127_0_0_1_only(redis_url: str) -> None:
    server = Dashboard(redis_url, host=None)
    try:
        assert listening_addresses(server.port) == {"0100007F"}  # 127.0.0.1, not 00000000
    finally:
        server.stop()


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
