"""One small app per queue, each defining the same benchmark task.

Every app reads ``BENCH_REDIS_URL``, ``BENCH_CONC`` (tasks in flight in one
worker process) and ``BENCH_SLEEP_S`` (0 = the no-op task of W1; 0.01 for W2)
from the environment, which the harness sets for each worker it starts.
"""

import os

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://localhost:6379/0")
CONC = int(os.environ.get("BENCH_CONC", "8"))
SLEEP_S = float(os.environ.get("BENCH_SLEEP_S", "0"))
QUEUE = "bench"
