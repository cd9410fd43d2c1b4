"""`kubetaskqueue --version` and `--help` start without the library's heavy imports.

redis (which imports redis.asyncio), pydantic and prometheus_client were most of a
half-second start-up; the commands import them when they run.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("redis", "pydantic", "pydantic_settings", "prometheus_client", "croniter",
         "kubetaskqueue.manager")

PROBE = """
import json, sys
from kubetaskqueue.cli import main
sys.argv = ["kubetaskqueue", *json.loads(sys.argv[1])]
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def loaded_by(*args: str) -> tuple[int, set[str]]:
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True,
                          text=True, timeout=60, check=True)
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    return report["code"], set(report["modules"])


@pytest.mark.parametrize("args", [("--version",), ("--help",), ("stats", "--help"),
                                  ("worker", "--help"), ("dead", "list", "--help")])
def test_help_and_version_do_not_import_the_library(args: tuple[str, ...]) -> None:
    code, modules = loaded_by(*args)
    assert code == 0
    assert sorted(m for m in HEAVY if m in modules) == []


def test_a_command_that_runs_imports_what_it_needs() -> None:
    # The probe sees the modules: a command that talks to Redis has loaded them.
    code, modules = loaded_by("--redis-url", "redis://127.0.0.1:1/0", "stats")
    assert code == 1
    assert {"redis", "kubetaskqueue.manager"} <= modules
