"""KUBETASKQUEUE_REDIS_URL_FILE: the Redis URL (it holds the password) read from a file,
a mounted Secret, instead of the environment."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from kubetaskqueue import ConfigError, Manager
from kubetaskqueue.cli import EXIT_RUNTIME_ERROR, cli


@pytest.fixture
def url_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "url"
    monkeypatch.delenv("KUBETASKQUEUE_REDIS_URL", raising=False)
    monkeypatch.setenv("KUBETASKQUEUE_REDIS_URL_FILE", str(path))
    return path


def test_the_url_comes_from_the_file(url_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url_file.write_text("redis://:p%40ss@redis.example:6379/2\n")  # as `kubectl create` may
    assert Manager().settings.redis_url == "redis://:p%40ss@redis.example:6379/2"
    # The variable itself, then an argument, win over the file.
    monkeypatch.setenv("KUBETASKQUEUE_REDIS_URL", "redis://env:6379/0")
    assert Manager().settings.redis_url == "redis://env:6379/0"
    assert Manager("redis://arg:6379/0").settings.redis_url == "redis://arg:6379/0"


@pytest.mark.parametrize(("content", "message"), [
    (None, "KUBETASKQUEUE_REDIS_URL_FILE: cannot read {path}: No such file or directory"),
    (" \n", "KUBETASKQUEUE_REDIS_URL_FILE: {path} is empty"),
    (b"\xff\xfe", "KUBETASKQUEUE_REDIS_URL_FILE: cannot read {path}: 'utf-8' codec can't "
                  "decode byte 0xff in position 0: invalid start byte"),
])
def test_an_unreadable_file_is_one_clear_error(url_file: Path, content: str | bytes | None,
                                               message: str) -> None:
    if isinstance(content, str):
        url_file.write_text(content)
    elif isinstance(content, bytes):
        url_file.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        Manager()
    assert str(err.value) == message.format(path=url_file)


def test_cli_commands_read_the_file(url_file: Path, redis_url: str) -> None:
    url_file.write_text(redis_url)
    Manager(redis_url).enqueue_many("mail", [1, 2])
    result = CliRunner().invoke(cli, ["stats", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["topics"]["mail"]["input"] == 2


def test_a_worker_without_its_url_file_stops_with_one_line(
        url_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "url_file_app.py").write_text(
        "from kubetaskqueue import Manager\nmanager = Manager()\n"
        "manager.register('t', print)\n")
    monkeypatch.chdir(tmp_path)  # `worker` imports the app from the working directory
    monkeypatch.delitem(sys.modules, "url_file_app", raising=False)
    result = CliRunner().invoke(cli, ["worker", "url_file_app:manager"])
    assert result.exit_code == EXIT_RUNTIME_ERROR
    assert result.output == (f"error: KUBETASKQUEUE_REDIS_URL_FILE: cannot read {url_file}: "
                             "No such file or directory\n")
