"""A subprocess's output, read line by line in a thread, so a test can wait for a line."""

from __future__ import annotations

import threading
from typing import IO

from helpers import wait_until


class Lines:
    """Collects the lines of ``pipe`` (a Popen's stdout or stderr) until it closes."""

    def __init__(self, pipe: IO[bytes] | IO[str] | None) -> None:
        assert pipe is not None, "start the process with stdout/stderr=subprocess.PIPE"
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: IO[bytes] | IO[str]) -> None:
        for line in pipe:
            self.lines.append(line.decode(errors="replace") if isinstance(line, bytes)
                              else line)

    def count(self, text: str) -> int:
        return sum(text in line for line in list(self.lines))

    def wait_for(self, text: str, timeout_s: float = 15.0, times: int = 1) -> None:
        """Until ``text`` has appeared in ``times`` lines."""
        wait_until(lambda: self.count(text) >= times, timeout_s, what=f"output line {text!r}")

    def text(self, timeout_s: float = 10.0) -> str:
        """Everything, once the pipe closed (the process ended)."""
        self._thread.join(timeout_s)
        return "".join(self.lines)
