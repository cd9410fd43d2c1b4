"""Bytecode for a copy of the library, as an installed package has it."""

from __future__ import annotations

import subprocess
import sys


def precompile(src: str) -> None:
    """Compile ``src``'s modules to bytecode, as installing a package does (pip, the
    image): a fresh copy has none, and under PYTHONDONTWRITEBYTECODE (set on these
    machines) every worker launch compiled them all again (~90 ms of a 0.4 s start-up
    that the peers, installed with their bytecode, did not pay)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", src], check=True,
                   stdout=subprocess.DEVNULL)
