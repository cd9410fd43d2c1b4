"""Run the chaos suite and print its figures as a Markdown table (for tests/chaos/README.md).

    python bench/chaos_runner.py            # short sizes (what CI runs)
    python bench/chaos_runner.py --full     # the sizes of issue #3
    python bench/chaos_runner.py -- -k storm
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ("tasks", "kills", "duplicates", "fenced", "max_in_work_after_death_s",
           "inputs_fuzzed")


def machine() -> str:
    redis_v = subprocess.run(["redis-server", "--version"], capture_output=True,
                             text=True, check=False).stdout.split()[2:3]
    return (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; nproc {os.cpu_count()}; "
            f"{' '.join(platform.uname())}; Python {platform.python_version()}; "
            f"Redis {''.join(redis_v).removeprefix('v=')}")


def table(rows: list[dict[str, object]]) -> str:
    head = ["scenario", "outcome", *COLUMNS, "other figures"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        rest = {k: v for k, v in row.items() if k not in (*COLUMNS, "scenario", "outcome")}
        cells = [str(row.get("scenario")), str(row.get("outcome")),
                 *(str(row.get(c, "")) for c in COLUMNS), json.dumps(rest)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="KUBETASKQUEUE_CHAOS=full sizes")
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "figures.jsonl"
        env = dict(os.environ, KUBETASKQUEUE_CHAOS_RESULTS=str(results))
        if args.full:
            env["KUBETASKQUEUE_CHAOS"] = "full"
        started = time.monotonic()
        code = subprocess.call([sys.executable, "-m", "pytest", "-m", "chaos", "tests/chaos",
                                "-q", "-p", "no:cacheprovider", *args.pytest_args],
                               cwd=ROOT, env=env)
        elapsed = time.monotonic() - started
        rows = [json.loads(line) for line in results.read_text().splitlines()] \
            if results.exists() else []
    print(f"\n{'full' if args.full else 'short'} run, {elapsed:.0f} s; {machine()}\n")
    print(table(rows))
    return code


if __name__ == "__main__":
    sys.exit(main())
