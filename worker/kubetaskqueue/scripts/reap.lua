-- reap: expired leases (their manager died or stalled) are worker losses: the
-- task runs again without spending a retry, up to max_worker_losses times.
-- Safe to run from many managers at once: each expired id is handled once.
-- Every task hash is read before the first write, so a script that aborts (a
-- Redis Cluster slot migrating under it) leaves nothing half-done.
-- KEYS: 1 input, 2 scheduled, 3 work, 4 dead, 5 stats, 6 wake, 7 events
-- ARGV: 1 task key prefix, 2 limit, 3 max worker losses
-- Returns {lost count, dead count}.
local now = now_s()
local k = {input = KEYS[1], scheduled = KEYS[2], dead = KEYS[4], stats = KEYS[5], wake = KEYS[6]}
local max_losses = tonumber(ARGV[3])
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local found = {}
for i, id in ipairs(expired) do
  found[i] = read_task('HMGET', ARGV[1] .. id, 'owner', 'claimed_at', 'id')
end
local tally = {lost = 0, dead = 0}
for i, id in ipairs(expired) do
  redis.call('ZREM', KEYS[3], id)
  local f = found[i]
  if f[3] then  -- the hash exists
    local reason = 'lease expired: manager ' .. (f[1] or '?') .. ' stopped renewing it'
      .. ' (claimed at ' .. (f[2] or '?') .. ')'
    local outcome = settle_worker_loss(k, ARGV[1] .. id, id, now, 'TASK_LEASE_EXPIRED', reason,
      max_losses)
    tally[outcome] = tally[outcome] + 1
  end
end
return {tally.lost, tally.dead}
