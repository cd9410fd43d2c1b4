-- release: graceful shutdown hands an unfinished task back; the attempt is not counted.
-- KEYS: 1 input, 2 work, 3 wake, 4 events
-- ARGV: 1 task key prefix, 2 id, 3 token
-- Returns 1, or 0 when the lease is no longer ours.
local id = ARGV[2]
local key = ARGV[1] .. id
if not holds_lease(KEYS[2], key, id, ARGV[3]) then
  return 0
end
redis.call('ZREM', KEYS[2], id)
local priority = priority_of(redis.call('HGET', key, 'priority'))
local attempts = redis.call('HINCRBY', key, 'attempts', -1)
local now = now_s()
redis.call('HSET', key, 'owner', '', 'ready_at', fmt(now))
emit('TASK_RELEASED', id, attempts + 1, now, 'released at shutdown; attempt not counted')
-- Front of its priority: it was already waiting its turn once.
join_input(KEYS[1], id, priority, true)
wake_managers(KEYS[3], 1)
return 1
