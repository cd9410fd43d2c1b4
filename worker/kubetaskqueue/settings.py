"""One source of truth for settings: Python arguments and CLI flags win, then
``KUBETASKQUEUE_*`` environment variables, then the defaults in defaults.py."""

from __future__ import annotations

import os
import socket

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from . import defaults


def _pod_name() -> str:
    return os.environ.get("POD_NAME") or socket.gethostname()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KUBETASKQUEUE_", extra="forbid")

    redis_url: str = defaults.REDIS_URL
    namespace: str = Field(defaults.NAMESPACE, min_length=1, pattern=r"^[^{}\s]+$")
    num_workers: int = Field(defaults.NUM_WORKERS, ge=1)
    lease_ttl_s: float = Field(defaults.LEASE_TTL_S, gt=0)
    poll_interval_s: float = Field(defaults.POLL_INTERVAL_S, gt=0)
    shutdown_grace_s: float = Field(defaults.SHUTDOWN_GRACE_S, ge=0)
    max_payload_bytes: int = Field(defaults.MAX_PAYLOAD_BYTES, gt=0)
    reap_interval_s: float = Field(defaults.REAP_INTERVAL_S, gt=0)
    pod_name: str = Field(default_factory=_pod_name)
