-- enqueue: store new tasks and make them ready (or scheduled when delayed).
-- KEYS: 1 input, 2 scheduled, 3 wake, 4 stats, 5 controls, 6 events
-- ARGV: 1 task key prefix, 2 topic, 3 count n,
--       then n groups of 6: id, payload JSON, num_retries, timeout_s ('' = none), delay_s,
--       keep_result_s ('' = none: the hash gets the field only when set)
-- MAX_QUEUED (a line store.py puts before the prelude) is this producer's limit.
-- Returns {1, 1 if the topic's counters are new (list it) else 0} on success,
-- {0, id} when a task with that id exists, {-1, queued, limit} when the batch would
-- take input + scheduled past the topic's limit (nothing written in either case).
local prefix, topic, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
-- Back-pressure: the limit the topic's workers declared, else this producer's (0 = none).
local controls = redis.call('HMGET', KEYS[5], 'paused', 'max_queued')
local limit = tonumber(controls[2]) or MAX_QUEUED
if limit > 0 then
  -- The one count of input here: LLEN while input is a list.
  local queued = redis.call('LLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2])
  if queued + n > limit then
    return {-1, queued, limit}
  end
end
for i = 0, n - 1 do
  local id = ARGV[4 + i * 6]
  if read_task('EXISTS', prefix .. id) == 1 then
    return {0, id}
  end
end
local now = now_s()
for i = 0, n - 1 do
  local b = 4 + i * 6
  local id, delay = ARGV[b], tonumber(ARGV[b + 4])
  local key = prefix .. id
  redis.call('HSET', key, 'id', id, 'topic', topic, 'payload', ARGV[b + 1],
    'num_retries', ARGV[b + 2], 'timeout_s', ARGV[b + 3], 'attempts', 0, 'token', 0,
    'enqueued_at', fmt(now))
  if ARGV[b + 5] ~= '' then
    redis.call('HSET', key, 'keep_result_s', ARGV[b + 5])
  end
  place_ready(KEYS[1], KEYS[2], key, id, now, delay)
  emit('TASK_ENQUEUE', id, 0, now, delay > 0 and ('due in ' .. fmt(delay) .. 's') or '')
end
-- A paused topic's managers would wake only to claim nothing.
if not controls[1] then
  wake_managers(KEYS[3], n)
end
local enqueued = redis.call('HINCRBY', KEYS[4], 'enqueued', n)
return {1, enqueued == n and 1 or 0}
