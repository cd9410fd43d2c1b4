-- task_info: one task, and where it is now (read-only).
-- KEYS: 1 input, 2 scheduled, 3 work, 4 dead, 5 legacy input (keys.py)
-- ARGV: 1 task key prefix, 2 id
-- Returns {} for an id the topic does not know, else {state, the hash as a flat
-- field/value list, lease deadline ('' unless in work), ms until a done task's
-- hash expires (-1 = never)}.
local id = ARGV[2]
local key = ARGV[1] .. id
local k = {input = KEYS[1], scheduled = KEYS[2], work = KEYS[3], dead = KEYS[4],
  legacy = KEYS[5]}
local state = task_state(k, id, read_task('HMGET', key, 'id', 'done_at', 'dead_at'))
if not state then
  return {}
end
return {state, redis.call('HGETALL', key), redis.call('ZSCORE', k.work, id) or '',
  redis.call('PTTL', key)}
