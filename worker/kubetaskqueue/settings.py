"""One source of truth for settings: Python arguments and CLI flags win, then
``KUBETASKQUEUE_*`` environment variables, then the defaults in defaults.py."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from . import defaults
from .errors import ConfigError


def _pod_name() -> str:
    return os.environ.get("POD_NAME") or socket.gethostname()


def read_secret_file(variable: str) -> str | None:
    """The value of the file that ``<variable>_FILE`` names (a mounted Secret keeps the
    secret out of the environment), surrounding whitespace dropped; None when that is
    unset. A file that cannot be read, or is empty, is a ConfigError naming it."""
    path = os.environ.get(f"{variable}_FILE")
    if not path:
        return None
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError(f"{variable}_FILE: cannot read {path}: {reason}") from exc
    if not value:
        raise ConfigError(f"{variable}_FILE: {path} is empty")
    return value


def env_or_secret_file(variable: str) -> str | None:
    """``variable`` from the environment, else from the file ``<variable>_FILE`` names."""
    return os.environ.get(variable) or read_secret_file(variable)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KUBETASKQUEUE_", extra="forbid")

    redis_url: str = defaults.REDIS_URL
    namespace: Annotated[str, Field(min_length=1, pattern=r"^[^{}\s]+$")] = defaults.NAMESPACE
    num_workers: Annotated[int, Field(ge=1)] = defaults.NUM_WORKERS
    prefetch: Annotated[int, Field(ge=0)] | None = None  # None: see prefetch_tasks
    lease_ttl_s: Annotated[float, Field(gt=0)] = defaults.LEASE_TTL_S
    poll_interval_s: Annotated[float, Field(gt=0)] = defaults.POLL_INTERVAL_S
    shutdown_grace_s: Annotated[float, Field(ge=0)] = defaults.SHUTDOWN_GRACE_S
    max_payload_bytes: Annotated[int, Field(gt=0)] = defaults.MAX_PAYLOAD_BYTES
    reap_interval_s: Annotated[float, Field(gt=0)] = defaults.REAP_INTERVAL_S
    max_worker_losses: Annotated[int, Field(ge=0)] = defaults.MAX_WORKER_LOSSES
    events_max_len: Annotated[int, Field(ge=0)] = defaults.EVENTS_MAX_LEN
    dead_max_tasks: Annotated[int, Field(ge=0)] = defaults.DEAD_MAX_TASKS
    dead_ttl_s: Annotated[float, Field(ge=0, allow_inf_nan=False)] = defaults.DEAD_TTL_S
    http_port: Annotated[int, Field(ge=0, le=65535)] = defaults.HTTP_PORT
    child_max_tasks: Annotated[int, Field(ge=0)] = defaults.CHILD_MAX_TASKS
    burst_redis_wait_s: Annotated[float, Field(gt=0)] = defaults.BURST_REDIS_WAIT_S
    max_queued: Annotated[int, Field(ge=0)] = defaults.MAX_QUEUED
    max_memory_share: Annotated[float, Field(ge=0, le=1)] = defaults.MAX_MEMORY_SHARE
    pod_name: str = Field(default_factory=_pod_name)

    @model_validator(mode="before")
    @classmethod
    def _redis_url_from_file(cls, data: Any) -> Any:
        """KUBETASKQUEUE_REDIS_URL_FILE: read when neither an argument nor
        KUBETASKQUEUE_REDIS_URL gives the URL (it holds the password)."""
        if isinstance(data, dict) and not data.get("redis_url"):
            url = read_secret_file("KUBETASKQUEUE_REDIS_URL")
            if url is not None:
                return {**data, "redis_url": url}
        return data

    @property
    def prefetch_tasks(self) -> int:
        """The prefetch in force: ``prefetch`` if set, else one task a slot, at least
        ``defaults.PREFETCH``."""
        if self.prefetch is None:
            return max(defaults.PREFETCH, self.num_workers)
        return self.prefetch
