"""Which live services the e2e suites need, and why they skip without them.

The cluster suite (test_chart_e2e.py) needs a kubeconfig and the name of an
image built from worker/Dockerfile that the cluster's nodes already have (or
can pull); the operator suite (test_operator_e2e.py) needs a kubeconfig and a
Redis the test machine reaches.
"""

from __future__ import annotations

import importlib.util
import os

ENV_KUBECONFIG = "KUBETASKQUEUE_E2E_KUBECONFIG"
ENV_REDIS_URL = "KUBETASKQUEUE_E2E_REDIS_URL"
ENV_IMAGE = "KUBETASKQUEUE_E2E_IMAGE"
# Optional: the Redis image for the chart's bundled Redis, where the chart's
# default cannot be pulled (an air-gapped test cluster).
ENV_REDIS_IMAGE = "KUBETASKQUEUE_E2E_REDIS_IMAGE"
# Optional: a file to write the run's measured timings and counts to (JSON).
ENV_RESULTS = "KUBETASKQUEUE_E2E_RESULTS"


def skip_reason(*needs: str) -> str | None:
    """Why a suite needing these variables (besides the kubeconfig) must skip, or None."""
    for name in (ENV_KUBECONFIG, *needs):
        if not os.environ.get(name):
            return f"{name} is not set: the e2e suites need a live cluster"
    if importlib.util.find_spec("kubernetes") is None:
        return "the official kubernetes client is missing: pip install -e '.[e2e]'"
    return None
