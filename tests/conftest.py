"""Fixtures: a real redis-server per test session (on a free port, restartable) and stores."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from helpers import RedisServer, free_port

__all__ = ["RedisServer", "free_port"]  # older tests import them from here


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    if redis_server.proc is None:  # a test killed it
        redis_server.start()
    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server.url


@pytest.fixture(params=["memory", "redis"])
def any_url(request: pytest.FixtureRequest) -> str:
    """The same behaviour test on the embedded store and on a real redis-server."""
    if request.param == "memory":
        return f"memory://test-{uuid.uuid4().hex}"
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server for tests that kill or pause it."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


# Subprocess workers import tests/apps; make that importable whatever the cwd.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in [str(Path(__file__).parent / "apps"), os.environ.get("PYTHONPATH", "")] if p)
