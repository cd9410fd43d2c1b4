"""``python -m bench.enqueue PEER single|batch|spaced N [START]``: enqueue N tasks
``{"i": k}`` and print the seconds it took as JSON (run by the harness)."""

import json
import sys

from bench.peers import enqueue


def main() -> None:
    peer, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    start = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    payloads = [{"i": k} for k in range(start, start + n)]
    took = enqueue(peer, payloads, batch=mode == "batch",
                   spacing_s=0.005 if mode == "spaced" else 0.0)
    print(json.dumps({"seconds": took}))


if __name__ == "__main__":
    main()
