"""SIGTERM and SIGINT for a process that runs a manager: the hook Manager.run installs.

Kubernetes stops a pod with SIGTERM, then SIGKILL after the termination grace
period; a terminal sends SIGINT on Ctrl-C. Both ask for the same graceful stop.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType


def on_stop_signals(handler: Callable[[str], None]) -> Callable[[], None]:
    """Call ``handler`` with the signal's name (``"SIGTERM"``) on each SIGTERM or SIGINT
    from now on. Returns the function that puts the previous handlers back. Python sets
    handlers in the main thread only: elsewhere nothing is installed (the embedding
    application stops the manager itself)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def on_signal(signum: int, frame: FrameType | None) -> None:
        handler(signal.Signals(signum).name)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for signum, old in previous.items():
            signal.signal(signum, old)

    return restore
