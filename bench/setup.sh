#!/usr/bin/env bash
# Create bench/.venv with kubetaskqueue (editable) and the peer queues it is compared with.
# The peers live only here: the library never imports them.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
python3 -m venv "$here/.venv"
"$here/.venv/bin/pip" install -q --upgrade pip
# kombu >= 5.6 wants redis-py >= 6.1, which arq 0.28 does not accept: keep kombu below 5.6.
"$here/.venv/bin/pip" install -q -e "$root" \
    "celery[redis]>=5.3" "kombu[redis]>=5.3,<5.6" "rq>=1.16" "dramatiq[redis]>=1.16" "arq>=0.25" "huey>=2.5" \
    "redis[hiredis]>=5.0" "prometheus-client>=0.17" "psutil>=5.9" "packaging>=23" "py-spy>=0.3.14"
"$here/.venv/bin/pip" freeze | grep -iE '^(kubetaskqueue|celery|kombu|rq|dramatiq|arq|huey|redis|hiredis|psutil|py-spy)' || true
