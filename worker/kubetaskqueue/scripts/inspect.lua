-- inspect: one consistent snapshot of a topic's queues (read-only).
-- KEYS: 1 input, 2 scheduled, 3 work, 4 dead, 5 stats
-- ARGV: 1 task key prefix
-- Returns {now, input, scheduled, scheduled_due, work, dead, oldest ready_at or '',
--          oldest dead_at or '', stats as a flat field/value list}.
local now = now_s()
local oldest = nil
local head = redis.call('LINDEX', KEYS[1], 0)
if head then
  oldest = tonumber(read_task('HGET', ARGV[1] .. head, 'ready_at'))
end
-- Due but not yet promoted tasks are ready too; delayed ones are not.
local due_head = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1)
if due_head[2] and (not oldest or tonumber(due_head[2]) < oldest) then
  oldest = tonumber(due_head[2])
end
local dead_oldest = ''
local dead_tail = redis.call('LINDEX', KEYS[4], -1)
if dead_tail then
  dead_oldest = read_task('HGET', ARGV[1] .. dead_tail, 'dead_at') or ''
end
return {fmt(now), redis.call('LLEN', KEYS[1]), redis.call('ZCARD', KEYS[2]),
  redis.call('ZCOUNT', KEYS[2], '-inf', now), redis.call('ZCARD', KEYS[3]),
  redis.call('LLEN', KEYS[4]), oldest and fmt(oldest) or '', dead_oldest,
  redis.call('HGETALL', KEYS[5])}
