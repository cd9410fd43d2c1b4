"""kubetaskqueue-operator: scales worker Deployments on Redis backlog (DESIGN.md §7).

Importing the package registers the kopf handlers (so `kopf run -m
kubetaskqueue_operator` works) when kopf is installed; the pure parts (policy,
spec, conditions) import without the ``[operator]`` extra.
"""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("kopf") is not None:
    from kubetaskqueue_operator import handlers as handlers
