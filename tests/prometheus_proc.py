"""A real Prometheus on a free loopback port, loaded with the shipped alert rules."""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from helpers import free_port

RULES = Path(__file__).resolve().parent.parent / "charts/kubetaskqueue/files/alerts.yaml"


class Prometheus:
    def __init__(self, binary: str, workdir: Path, targets: list[str]) -> None:
        self.port = free_port()
        config = workdir / "prometheus.yml"
        config.write_text(json.dumps({  # JSON is YAML
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "kubetaskqueue",
                                "static_configs": [{"targets": targets}]}],
        }))
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.load(response)["data"]
        except OSError:
            return None

    def query(self, promql: str) -> list[dict[str, Any]]:
        data = self.api("query", query=promql)
        return [] if data is None else list(data["result"])

    def firing(self, alertname: str) -> list[dict[str, Any]]:
        data = self.api("alerts")
        alerts = [] if data is None else data["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == alertname
                and a["state"] == "firing"]

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
