"""Default settings, with units in their names and the reason for each value."""

REDIS_URL = "redis://localhost:6379/0"
NAMESPACE = "kubetaskqueue"
# The seed's default concurrency; bounds tasks in flight per manager (not cluster-wide).
NUM_WORKERS = 5
# Most tasks a manager claims beyond its slots, to start as soon as a slot frees (no
# claim round trip between): one a slot, at least this many. Only as many as the slots
# start within 10 ms at the median run time (attempts.py), so a busy pod does not sit on
# another's work. 64 slots of 10 ms tasks ran 3-5 % faster with 64 than with 16
# (bench/README.md, session 13).
PREFETCH = 16
# Long enough to ride out a GC pause or a short Redis blip, short enough that a
# killed pod's tasks restart within a minute.
LEASE_TTL_S = 30.0
# Idle managers block this long on the wake-up list before checking scheduled
# tasks and Redis health again (the seed polls every 2 s).
POLL_INTERVAL_S = 2.0
# Fits inside Kubernetes' default terminationGracePeriodSeconds of 30 s.
SHUTDOWN_GRACE_S = 25.0
# Large payloads belong in object storage; Redis keeps everything in memory.
MAX_PAYLOAD_BYTES = 1024 * 1024
# Default retry backoff: 10**n ms for the n-th retry (the seed's growth), capped.
BACKOFF_BASE_S = 0.001
BACKOFF_CAP_S = 600.0
# Expired leases handled per reap call; the next period picks up the rest.
REAP_LIMIT = 1000
# Due scheduled tasks promoted per claim call.
PROMOTE_LIMIT = 1000
# A task whose worker was lost (pod deleted, evicted, OOM-killed; its lease ran out)
# runs again without spending a retry, this many times; one loss more and it is
# poison (it likely kills its worker) and goes dead. 0 = the first loss is fatal.
MAX_WORKER_LOSSES = 3
# How often every manager looks for expired leases (also bounded by lease TTL).
REAP_INTERVAL_S = 5.0
# Redis reconnect backoff while it is unreachable.
RECONNECT_MIN_S = 0.1
RECONNECT_MAX_S = 5.0
# /metrics, /healthz and /readyz of a worker or exporter (Prometheus' node-exporter
# convention); 0 turns the endpoint off.
HTTP_PORT = 9100
# Dead-queue retention, per topic: past this many dead tasks the oldest are deleted
# (Sidekiq's default; 0 = no cap), and dead tasks older than this are deleted
# (180 days; 0 = kept until a human purges them).
DEAD_MAX_TASKS = 10_000
DEAD_TTL_S = 180 * 24 * 3600.0
# Oldest dead tasks a death may delete in its own script (1 keeps the cap; the
# rest catch up after the cap was lowered or many passed the age at once) ...
DEAD_TRIM_PER_DEATH = 4
# ... and a periodic sweep of each topic by every manager's reaper, for ages
# passed without new deaths (and deaths that did not trim: malformed claims,
# poison found by the operator).
DEAD_SWEEP_INTERVAL_S = 60.0
DEAD_SWEEP_LIMIT = 1000
# Longest keep_result_s: a result is kept in Redis memory.
MAX_KEEP_RESULT_S = 365 * 24 * 3600.0
# Task events kept per topic (a capped Redis stream, ~100 bytes each); 0 = off.
EVENTS_MAX_LEN = 10_000
# isolation="process": a child process is replaced after this many tasks, 0 = never
# (set it when a processor leaks memory, as Celery's worker_max_tasks_per_child).
CHILD_MAX_TASKS = 0
# A burst worker (a job, CI) exits 1 once Redis has been unreachable this long; a
# long-running worker waits for Redis however long it takes.
BURST_REDIS_WAIT_S = 30.0
# How often a redis+sentinel:// client asks the sentinels where the master is: after
# a failover the old master stays writable until it is demoted, and writes there are lost.
SENTINEL_RECHECK_S = 0.5
# A manager with schedules checks in each one this often (besides waking at each fire
# time): how soon a changed definition is seen, and what a definition's "live" means.
SCHEDULE_CHECK_IN_S = 1.0
# A schedule definition not checked in for this long is gone; when it shows up again
# (a rollback, a restart after every manager was down) its fire times begin after the
# last check-in of any other definition, else after its last fire.
SCHEDULE_LIVE_S = 10.0
# Back-pressure: enqueues are refused once a topic holds this many tasks in input +
# scheduled (0 = unlimited; a topic's workers may declare their own), or once Redis
# uses this share of its maxmemory (0 = off): with noeviction a full Redis refuses
# every write, the acks of finished tasks too, so producers must stop first.
MAX_QUEUED = 0
MAX_MEMORY_SHARE = 0.9
# How long a producer trusts its last INFO memory reading (one round trip per period).
MEMORY_CHECK_INTERVAL_S = 1.0
# How long a producer trusts its list of topics live managers serve (for the
# warning about enqueues to a topic nobody serves).
SERVED_TOPICS_TTL_S = 30.0
