-- enqueue: store new tasks and make them ready (or scheduled when delayed).
-- KEYS: 1 input, 2 scheduled, 3 wake, 4 stats, 5 controls, 6 legacy input, 7 events
-- ARGV: 1 task key prefix, 2 topic, 3 count n,
--       then n groups of 7: id, payload JSON, num_retries, timeout_s ('' = none), delay_s,
--       keep_result_s ('' = none: the hash gets the field only when set),
--       priority (an integer, -100..100, checked by the caller)
-- MAX_QUEUED (a line store.py puts before the prelude) is this producer's limit.
-- Returns {1, 1 if the topic's counters are new (list it) else 0} on success,
-- {0, id} when a task with that id exists, {-1, queued, limit} when the batch would
-- take input + scheduled past the topic's limit (nothing written in either case).
local prefix, topic, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
-- Back-pressure: the limit the topic's workers declared, else this producer's (0 = none).
local controls = redis.call('HMGET', KEYS[5], 'paused', 'max_queued')
local limit = tonumber(controls[2]) or MAX_QUEUED
if limit > 0 then
  -- The one count of input here (with what an older version left in its list).
  local queued = redis.call('ZCARD', KEYS[1]) + redis.call('LLEN', KEYS[6])
    + redis.call('ZCARD', KEYS[2])
  if queued + n > limit then
    return {-1, queued, limit}
  end
end
for i = 0, n - 1 do
  local id = ARGV[4 + i * 7]
  if read_task('EXISTS', prefix .. id) == 1 then
    return {0, id}
  end
end
local now = now_s()
local tails = {}  -- priority -> the last score given out in its band (one lookup per batch)
local ready = {}  -- score, id, ...: joins input in one ZADD
for i = 0, n - 1 do
  local b = 4 + i * 7
  local id, delay, p = ARGV[b], tonumber(ARGV[b + 4]), priority_of(ARGV[b + 6])
  local key = prefix .. id
  local ready_at = now + delay
  redis.call('HSET', key, 'id', id, 'topic', topic, 'payload', ARGV[b + 1],
    'num_retries', ARGV[b + 2], 'timeout_s', ARGV[b + 3], 'attempts', 0, 'token', 0,
    'enqueued_at', fmt(now), 'ready_at', fmt(ready_at), 'priority', p)
  if ARGV[b + 5] ~= '' then
    redis.call('HSET', key, 'keep_result_s', ARGV[b + 5])
  end
  if delay > 0 then
    redis.call('ZADD', KEYS[2], ready_at, id)
  else
    tails[p] = (tails[p] and tails[p] + 1) or join_score(KEYS[1], p, false)
    ready[#ready + 1], ready[#ready + 2] = score_text(tails[p]), id
  end
  emit('TASK_ENQUEUE', id, 0, now, delay > 0 and ('due in ' .. fmt(delay) .. 's') or '')
end
zadd_all(KEYS[1], ready)
-- A paused topic's managers would wake only to claim nothing.
if not controls[1] then
  wake_managers(KEYS[3], n)
end
local enqueued = redis.call('HINCRBY', KEYS[4], 'enqueued', n)
return {1, enqueued == n and 1 or 0}
