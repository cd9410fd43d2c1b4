-- claim: promote due scheduled tasks, then lease up to `max` ready tasks (none if paused).
-- KEYS: 1 input, 2 scheduled, 3 work, 4 stats, 5 dead, 6 controls, 7 events
-- ARGV: 1 task key prefix, 2 max, 3 lease ttl seconds, 4 owner (manager id), 5 promote limit
-- Returns {seconds until the next scheduled task is due or -1, claimed}
-- where claimed is a list of {id, token, attempts, payload, num_retries, timeout_s,
-- enqueued_at, ready_at, claimed_at}. Each claim bumps the task's fencing token.
-- A task hash whose counters are not integers (edited by hand) goes dead at once:
-- HINCRBY would fail mid-script and strand the tasks claimed before it.
local prefix, max, ttl, owner = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local now = now_s()
local function next_due()
  local head = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return head[2] and fmt(math.max(0, tonumber(head[2]) - now)) or '-1'
end
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[5]))
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[2], id)
  redis.call('RPUSH', KEYS[1], id)
end
-- Paused: due tasks still became ready above, but nothing is leased (in-flight tasks
-- go on; resuming wakes the idle managers). The next due time keeps promotion going.
if redis.call('HEXISTS', KEYS[6], 'paused') == 1 then
  return {next_due(), {}}
end
local claimed = {}
while #claimed < max do
  local id = redis.call('LPOP', KEYS[1])
  if not id then break end
  local key = prefix .. id
  local counters = redis.call('HMGET', key, 'token', 'attempts')
  -- An id without a task hash was purged meanwhile; dropping it loses nothing.
  if redis.call('EXISTS', key) == 0 then
    -- nothing to do
  elseif not (is_integer(counters[1]) and is_integer(counters[2])) then
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
    local f = redis.call('HMGET', key, 'payload', 'num_retries', 'timeout_s', 'enqueued_at', 'ready_at')
    claimed[#claimed + 1] = {id, tostring(token), tostring(attempts), f[1] or '', f[2] or '0',
      f[3] or '', f[4] or '0', f[5] or '0', fmt(now)}
  end
end
if #claimed > 0 then
  redis.call('HINCRBY', KEYS[4], 'started', #claimed)
end
return {next_due(), claimed}
