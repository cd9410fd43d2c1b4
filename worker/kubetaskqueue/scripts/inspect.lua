-- inspect: one consistent snapshot of a topic's queues (read-only).
-- KEYS: 1 input, 2 legacy input, 3 scheduled, 4 work, 5 dead, 6 stats, 7 rate
-- ARGV: 1 task key prefix
-- Returns {now, input, scheduled, scheduled_due, work, dead, oldest ready_at or '',
--          oldest dead_at or '', stats as a flat field/value list, rate limit as a flat
--          list: limit text, interval, slots, '1' if in force now else '0', mean run
--          seconds ('' each when unknown)}.
local now = now_s()
local oldest = nil
local function consider(id)
  local t = id and tonumber(read_task('HGET', ARGV[1] .. id, 'ready_at'))
  if t and (not oldest or t < oldest) then oldest = t end
end
-- The head of each priority's band waited longest in it (one step per priority in use).
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
while head[2] do
  consider(head[1])
  local next_band = (band_of(tonumber(head[2])) + 1) * PRIORITY_BAND - PRIORITY_BAND / 2
  head = redis.call('ZRANGEBYSCORE', KEYS[1], score_text(next_band), '+inf', 'WITHSCORES',
    'LIMIT', 0, 1)
end
consider(redis.call('LINDEX', KEYS[2], 0))
-- Due but not yet promoted tasks are ready too; delayed ones are not.
local due_head = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1)
if due_head[2] and (not oldest or tonumber(due_head[2]) < oldest) then
  oldest = tonumber(due_head[2])
end
local dead_oldest = ''
local dead_tail = redis.call('LINDEX', KEYS[5], -1)
if dead_tail then
  dead_oldest = read_task('HGET', ARGV[1] .. dead_tail, 'dead_at') or ''
end
-- The rate limit in force (recounted here, read-only, if a declaration lapsed
-- since the last claim), else the one last in force.
local r = redis.call('HMGET', KEYS[7], 'limit', 'interval', 'slots', 'lapse', 'mean_run_s')
local limit, in_force = {r[1] or '', r[2] or '', r[3] or ''}, false
if tonumber(r[4]) and tonumber(r[4]) > now then
  in_force = true
elseif r[4] then
  local best = limit_in_force(redis.call('HGETALL', KEYS[7]), now)
  if best then
    limit = {best.text, string.format('%.17g', best.interval), tostring(best.slots)}
    in_force = true
  end
end
return {fmt(now), redis.call('ZCARD', KEYS[1]) + redis.call('LLEN', KEYS[2]),
  redis.call('ZCARD', KEYS[3]), redis.call('ZCOUNT', KEYS[3], '-inf', now),
  redis.call('ZCARD', KEYS[4]), redis.call('LLEN', KEYS[5]), oldest and fmt(oldest) or '',
  dead_oldest, redis.call('HGETALL', KEYS[6]),
  {limit[1], limit[2], limit[3], in_force and '1' or '0', r[5] or ''}}
