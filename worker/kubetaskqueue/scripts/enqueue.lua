-- enqueue: store new tasks and make them ready (or scheduled when delayed).
-- KEYS: 1 input, 2 scheduled, 3 wake, 4 stats, 5 controls, 6 legacy input, 7 events
-- ARGV: 1 task key prefix, 2 topic, 3 count n, then what the n tasks share:
--       4 num_retries, 5 timeout_s ('' = none), 6 delay_s, 7 keep_result_s ('' = none),
--       8 priority (an integer, -100..100, checked by the caller);
--       then n pairs: id, payload JSON (producer.py)
-- MAX_QUEUED (a line store.py puts before the prelude) is this producer's limit.
-- Returns {1, 1 if the topic's counters are new (list it) else 0} on success,
-- {0, id} when a task with that id exists, {-1, queued, limit} when the batch would
-- take input + scheduled past the topic's limit (nothing written in either case).
local prefix, topic, n = ARGV[1], ARGV[2], tonumber(ARGV[3])
local delay, p = tonumber(ARGV[6]), priority_of(ARGV[8])
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
-- Duplicates: one EXISTS for up to 256 hashes; one by one only to name the id found.
local keys = {}
for i = 1, n do
  keys[i] = prefix .. ARGV[7 + 2 * i]
end
for first = 1, n, 256 do
  local last = math.min(n, first + 255)
  if read_task('EXISTS', unpack(keys, first, last)) > 0 then
    for i = first, last do
      if read_task('EXISTS', keys[i]) == 1 then
        return {0, ARGV[7 + 2 * i]}
      end
    end
  end
end
local now = now_s()
local ready_at = now + delay
-- Fields at their default (no retries, timeout or kept result, priority 0, attempts and
-- token 0) are left out: every reader of a task hash takes a missing one as the default.
local fields = {'id', '', 'payload', '', 'topic', topic, 'enqueued_at', fmt(now),
  'ready_at', fmt(ready_at)}
for _, f in ipairs({{'num_retries', ARGV[4], '0'}, {'timeout_s', ARGV[5], ''},
    {'keep_result_s', ARGV[7], ''}, {'priority', tostring(p), '0'}}) do
  if f[2] ~= f[3] then
    fields[#fields + 1], fields[#fields + 2] = f[1], f[2]
  end
end
local detail = delay > 0 and ('due in ' .. fmt(delay) .. 's') or ''
-- A ready batch joins its priority's band in order, from one lookup of the band's end.
local score = delay == 0 and join_score(KEYS[1], p, false)
local queued = {}  -- score, id, ...: the batch joins input (or scheduled) in a few ZADDs
for i = 1, n do
  local id = ARGV[7 + 2 * i]
  fields[2], fields[4] = id, ARGV[8 + 2 * i]
  redis.call('HSET', keys[i], unpack(fields))
  if score then
    queued[2 * i - 1], score = score_text(score), score + 1
  else
    queued[2 * i - 1] = ready_at
  end
  queued[2 * i] = id
  emit('TASK_ENQUEUE', id, 0, now, detail)
end
zadd_all(score and KEYS[1] or KEYS[2], queued)
-- A paused topic's managers would wake only to claim nothing.
if not controls[1] then
  wake_managers(KEYS[3], n)
end
local enqueued = redis.call('HINCRBY', KEYS[4], 'enqueued', n)
return {1, enqueued == n and 1 or 0}
