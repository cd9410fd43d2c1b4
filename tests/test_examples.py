"""examples/: its README's commands, run as written against a real redis-server, and the
README's "Use it" snippets, which come from the same example app."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import free_port
from kubetaskqueue import Manager
from kubetaskqueue.cli import cli
from proc_lines import Lines

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
APP = EXAMPLES / "kubetaskqueue_example.py"
CHART_APP = ROOT / "charts" / "kubetaskqueue" / "files" / "kubetaskqueue_example.py"


def console_blocks() -> list[list[str]]:
    text = (EXAMPLES / "README.md").read_text()
    return [block.splitlines() for block in re.findall(r"```console\n(.*?)```", text, re.S)]


def normalise(line: str) -> str:
    """What differs between runs and machines: ids, times, host names, ports, paths."""
    line = re.sub(r"\b[0-9a-f]{32}\b", "<id>", line)
    line = re.sub(r"^\d\d:\d\d:\d\d ", "<time> ", line)
    line = re.sub(r"manager \S+ (started|stopped)", r"manager <name> \1", line)
    line = re.sub(r"on port \d+", "on port <port>", line)
    line = re.sub(r'File "/home/you/kubetaskqueue/', f'File "{ROOT}/', line)
    return re.sub(r", line \d+,", ", line <n>,", line)


def logged(lines: list[str]) -> list[str]:
    """A log's lines, without the ^C a terminal echoes or the traceback's carets (which
    Python versions draw differently)."""
    return [normalise(line) for line in lines
            if line.strip() and line != "^C" and line.strip(" ^~") != ""]


def test_the_chart_runs_the_same_file() -> None:
    assert APP.is_symlink() and APP.resolve() == CHART_APP.resolve()


def test_the_readme_commands_run_as_written(redis_url: str) -> None:
    start, session, log = console_blocks()
    assert start[:3] == ["$ . .venv/bin/activate",
                         "$ redis-cli ping || redis-server --daemonize yes --dir /tmp", "PONG"]
    assert start[3] == "$ cd examples" and start[4].startswith("$ kubetaskqueue worker ")
    env = dict(os.environ, KUBETASKQUEUE_REDIS_URL=redis_url, KUBETASKQUEUE_LOG_FORMAT="text",
               KUBETASKQUEUE_HTTP_PORT=str(free_port()))
    worker = subprocess.Popen(
        [sys.executable, "-m", "kubetaskqueue", *shlex.split(start[4][2:])[1:]], cwd=EXAMPLES,
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out = Lines(worker.stdout)
        out.wait_for(" started: topics ", timeout_s=30)
        assert session[0] == "$ . .venv/bin/activate"
        commands = [i for i, line in enumerate(session) if line.startswith("$ ")][1:]
        for i, end in zip(commands, [*commands[1:], len(session)], strict=True):
            argv = shlex.split(session[i][2:])
            assert argv[0] == "kubetaskqueue"
            result = CliRunner().invoke(cli, argv[1:], env={"KUBETASKQUEUE_REDIS_URL": redis_url})
            assert logged(result.output.splitlines()) == logged(session[i + 1:end]), session[i]
        worker.send_signal(signal.SIGINT)
        assert worker.wait(timeout=30) == 0
    finally:
        worker.kill()
    assert logged(out.text().splitlines()) == logged(start[5:] + log)


def test_the_app_runs_in_one_process_on_the_embedded_store() -> None:
    done = subprocess.run([sys.executable, APP.name], cwd=EXAMPLES, capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, KUBETASKQUEUE_HTTP_PORT="0"))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "email: 1 completed, 1 dead\nresize: 1 completed, 0 dead\n"
    assert ("failed (attempt 3, no retries left; moved to dead): ValueError: not an email "
            "address: 'nobody'") in done.stderr


def readme_use_it_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Use it\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_readme_use_it_snippet_is_the_example_app() -> None:
    processors = readme_use_it_blocks()[0]
    first, body = processors.split("\n", 1)
    assert first == "# examples/kubetaskqueue_example.py (run it: examples/README.md)"
    assert body in APP.read_text()


def test_the_readme_producer_snippet_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBETASKQUEUE_REDIS_URL", "memory://readme-producer")
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.delitem(sys.modules, "kubetaskqueue_example", raising=False)
    ran: list[Manager] = []
    monkeypatch.setattr(Manager, "run", lambda self, **_: ran.append(self))
    namespace: dict[str, object] = {}
    exec(readme_use_it_blocks()[1], namespace)
    manager = namespace["manager"]
    assert ran == [manager] and isinstance(manager, Manager)
    email = manager.stats()["topics"]["email"]
    assert (email["input"], email["scheduled"]) == (3, 1)
