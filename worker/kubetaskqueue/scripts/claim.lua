-- claim: promote due scheduled tasks, then lease up to `max` ready tasks (none if paused).
-- KEYS: 1 input, 2 scheduled, 3 work, 4 stats, 5 dead, 6 controls, 7 events
-- ARGV: 1 task key prefix, 2 max, 3 lease ttl seconds, 4 owner (manager id), 5 promote limit
-- Returns {seconds until the next scheduled task is due or -1, claimed}
-- where claimed is a list of {id, token, attempts, payload, num_retries, timeout_s,
-- enqueued_at, ready_at, claimed_at, keep_result_s}. Each claim bumps the task's fencing token.
-- A task hash whose counters are not integers (edited by hand) goes dead at once:
-- HINCRBY would fail mid-script and strand the tasks claimed before it.
local prefix, max, ttl, owner = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local now = now_s()
local function next_due()
  local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return head[2] and fmt(math.max(0, tonumber(head[2]) - now)) or '-1'
end
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[5]))
-- Paused: nothing is leased (in-flight tasks go on; resuming wakes the idle managers),
-- but due tasks still become ready, and the next due time keeps promotion going.
local paused = redis.call('HEXISTS', KEYS[6], 'paused') == 1
-- The ids this call takes: the head of input, then the due ones that promotion
-- appends behind it. Their hashes are read before anything is written.
local picked = paused and {} or redis.call('LRANGE', KEYS[1], 0, max - 1)
for _, id in ipairs(paused and {} or due) do
  if #picked >= max then break end
  picked[#picked + 1] = id
end
local found = {}
for i, id in ipairs(picked) do
  found[i] = read_task('HMGET', prefix .. id, 'token', 'attempts', 'payload', 'num_retries',
    'timeout_s', 'enqueued_at', 'ready_at', 'id', 'keep_result_s')
end
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('RPUSH', KEYS[1], id)
end
if #picked > 0 then
  redis.call('LTRIM', KEYS[1], #picked, -1)
end
local claimed = {}
for i, id in ipairs(picked) do
  local key, f = prefix .. id, found[i]
  -- An id without a task hash was purged meanwhile; dropping it loses nothing.
  if not (f[1] or f[2] or f[3] or f[8]) then
    -- nothing to do
  elseif not (is_integer(f[1]) and is_integer(f[2])) then
    redis.call('LPUSH', KEYS[5], id)
    redis.call('HSET', key, 'last_error', 'malformed task: token or attempts is not an integer',
      'failed_at', fmt(now), 'dead_at', fmt(now))
    redis.call('HINCRBY', KEYS[4], 'failed', 1)
    emit('TASK_DEAD', id, '', now, 'malformed task: token or attempts is not an integer')
  else
    local token = redis.call('HINCRBY', key, 'token', 1)
    local attempts = redis.call('HINCRBY', key, 'attempts', 1)
    redis.call('HSET', key, 'owner', owner, 'claimed_at', fmt(now))
    redis.call('ZADD', KEYS[3], now + ttl, id)
    emit('TASK_START', id, attempts, now, owner)
    claimed[#claimed + 1] = {id, tostring(token), tostring(attempts), f[3] or '', f[4] or '0',
      f[5] or '', f[6] or '0', f[7] or '0', fmt(now), f[9] or ''}
  end
end
if #claimed > 0 then
  redis.call('HINCRBY', KEYS[4], 'started', #claimed)
end
return {next_due(), claimed}
