"""Make docs/dashboard.png: a private Redis, two in-process workers, a few minutes of traffic.

    python tests/dashboard/screenshot.py [--minutes 4] [--out docs/dashboard.png]

Not a test (pytest does not collect it); rerun it when the page changes.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from browser import Page, start_chromium  # noqa: E402
from dashboard_helpers import TOKEN, Dashboard  # noqa: E402
from helpers import RedisServer  # noqa: E402
from kubetaskqueue import Manager, Task  # noqa: E402


class SMTPError(Exception):
    pass


class UnidentifiedImageError(Exception):
    pass


def make_worker(url: str, pod: str) -> Manager:
    m = Manager(url, num_workers=8, poll_interval_s=0.2)
    m.configure(pod_name=pod)

    @m.processor("email")
    def email(task: Task) -> None:
        time.sleep(random.uniform(0.02, 0.2))
        if task.payload["to"].endswith(".invalid"):
            raise SMTPError(f"550 5.1.1 <{task.payload['to']}>: recipient address rejected")

    @m.processor("resize")
    def resize(task: Task) -> None:
        time.sleep(random.uniform(0.1, 0.6))
        if task.payload["key"].endswith(".heic"):
            raise UnidentifiedImageError(f"cannot identify image file 's3://uploads/"
                                         f"{task.payload['key']}'")

    return m


def traffic(producer: Manager, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    tick = 0
    while time.monotonic() < deadline:
        tick += 1
        burst = 4 + int(6 * abs(((tick // 20) % 6) - 3))  # a slow wave, for the sparklines
        producer.enqueue_many("email", [
            {"to": f"user{tick}-{i}@example.{'invalid' if random.random() < 0.02 else 'com'}"}
            for i in range(burst)], num_retries=1)
        producer.enqueue_many("resize", [
            {"key": f"photos/{tick}-{i}.{'heic' if random.random() < 0.03 else 'jpg'}"}
            for i in range(burst // 2)], num_retries=1)
        time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--out", default=str(HERE.parent.parent / "docs" / "dashboard.png"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as workdir:
        server = RedisServer(Path(workdir))
        server.start()
        workers = [make_worker(server.url, pod) for pod in
                   ("worker-6c9f8d7b5-2xkqp", "worker-6c9f8d7b5-h7wzn")]
        dashboard = None
        try:
            for w in workers:
                w.start()
            producer = Manager(server.url)
            producer.enqueue_many("reports", [{"month": m} for m in range(1, 13)])  # no worker
            producer.enqueue("email", {"to": "<script>alert('hi')</script>@example.invalid"})
            dashboard = Dashboard(server.url, allow_actions=True)
            # Traffic keeps flowing while the picture is taken, so rates and slots show it.
            feeder = threading.Thread(target=traffic, args=(producer, args.minutes * 60 + 15),
                                      daemon=True)
            feeder.start()
            time.sleep(args.minutes * 60)
            driver = start_chromium(1360, 1000)
            try:
                page = Page(driver)
                page.open(dashboard.url)
                page.expect_count("#status.status-live", 1)
                page.select("#dead-topic", "email")
                page.fill("#token", TOKEN)
                page.click("#dead-list li:first-child summary")
                time.sleep(2.5)  # two samples, so the rates show
                page.screenshot(args.out)
            finally:
                driver.quit()
            print(f"wrote {args.out}")
            feeder.join()
        finally:
            if dashboard is not None:
                dashboard.stop()
            for w in workers:
                w.stop(timeout_s=5)
            server.stop()


if __name__ == "__main__":
    main()
