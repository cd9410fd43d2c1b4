-- reap: expired leases (their manager died or stalled) become failed attempts.
-- Safe to run from many managers at once: each expired id is handled once.
-- KEYS: 1 input, 2 scheduled, 3 work, 4 dead, 5 stats, 6 wake, 7 events
-- ARGV: 1 task key prefix, 2 limit
-- Returns {retried count, dead count}.
local now = now_s()
local k = {input = KEYS[1], scheduled = KEYS[2], dead = KEYS[4], stats = KEYS[5], wake = KEYS[6]}
local retried, dead = 0, 0
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[3], id)
  local key = ARGV[1] .. id
  if redis.call('EXISTS', key) == 1 then
    local f = redis.call('HMGET', key, 'owner', 'claimed_at', 'attempts')
    local err = 'lease expired: manager ' .. (f[1] or '?') .. ' stopped renewing it (claimed at '
      .. (f[2] or '?') .. ')'
    emit('TASK_LEASE_EXPIRED', id, f[3], now, err)
    if settle_failure(k, key, id, now, err, 0, false) == 'dead' then
      dead = dead + 1
    else
      retried = retried + 1
    end
  end
end
return {retried, dead}
