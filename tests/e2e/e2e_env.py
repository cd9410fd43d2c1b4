"""Which live services the e2e suite needs, and why it skips without them."""

from __future__ import annotations

import os

ENV_KUBECONFIG = "KUBETASKQUEUE_E2E_KUBECONFIG"
ENV_REDIS_URL = "KUBETASKQUEUE_E2E_REDIS_URL"


def skip_reason() -> str | None:
    if not os.environ.get(ENV_KUBECONFIG):
        return f"{ENV_KUBECONFIG} is not set: the operator e2e suite needs a live cluster"
    if not os.environ.get(ENV_REDIS_URL):
        return f"{ENV_REDIS_URL} is not set: the operator e2e suite needs a Redis"
    return None
