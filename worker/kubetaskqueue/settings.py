"""One source of truth for settings: Python arguments and CLI flags win, then
``KUBETASKQUEUE_*`` environment variables, then the defaults in defaults.py."""

from __future__ import annotations

import os
import socket
from typing import Annotated

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from . import defaults


def _pod_name() -> str:
    return os.environ.get("POD_NAME") or socket.gethostname()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KUBETASKQUEUE_", extra="forbid")

    redis_url: str = defaults.REDIS_URL
    namespace: Annotated[str, Field(min_length=1, pattern=r"^[^{}\s]+$")] = defaults.NAMESPACE
    num_workers: Annotated[int, Field(ge=1)] = defaults.NUM_WORKERS
    lease_ttl_s: Annotated[float, Field(gt=0)] = defaults.LEASE_TTL_S
    poll_interval_s: Annotated[float, Field(gt=0)] = defaults.POLL_INTERVAL_S
    shutdown_grace_s: Annotated[float, Field(ge=0)] = defaults.SHUTDOWN_GRACE_S
    max_payload_bytes: Annotated[int, Field(gt=0)] = defaults.MAX_PAYLOAD_BYTES
    reap_interval_s: Annotated[float, Field(gt=0)] = defaults.REAP_INTERVAL_S
    max_worker_losses: Annotated[int, Field(ge=0)] = defaults.MAX_WORKER_LOSSES
    events_max_len: Annotated[int, Field(ge=0)] = defaults.EVENTS_MAX_LEN
    http_port: Annotated[int, Field(ge=0, le=65535)] = defaults.HTTP_PORT
    child_max_tasks: Annotated[int, Field(ge=0)] = defaults.CHILD_MAX_TASKS
    burst_redis_wait_s: Annotated[float, Field(gt=0)] = defaults.BURST_REDIS_WAIT_S
    max_queued: Annotated[int, Field(ge=0)] = defaults.MAX_QUEUED
    max_memory_share: Annotated[float, Field(ge=0, le=1)] = defaults.MAX_MEMORY_SHARE
    pod_name: str = Field(default_factory=_pod_name)
