-- reap: expired leases (their manager died or stalled) are worker losses: the
-- task runs again without spending a retry, up to max_worker_losses times.
-- Safe to run from many managers at once: each expired id is handled once.
-- Every task hash is read before the first write, so a script that aborts (a
-- Redis Cluster slot migrating under it) leaves nothing half-done.
-- It also drops the oldest dead tasks past dead_max_tasks / dead_ttl_s: as many as
-- its poison deaths need, and up to `sweep` more (store.py asks for a sweep once a
-- minute, so ages pass even while nothing dies).
-- KEYS: 1 input, 2 scheduled, 3 work, 4 dead, 5 stats, 6 wake, 7 events
-- ARGV: 1 task key prefix, 2 limit, 3 max worker losses, 4 sweep (0 = none)
-- Returns {lost count, dead count}.
local now = now_s()
local k = {input = KEYS[1], scheduled = KEYS[2], dead = KEYS[4], stats = KEYS[5], wake = KEYS[6]}
local max_losses = tonumber(ARGV[3])
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local found, poison = {}, 0
for i, id in ipairs(expired) do
  local f = read_task('HMGET', ARGV[1] .. id, 'owner', 'claimed_at', 'id', 'losses')
  found[i] = f
  -- As settle_worker_loss will count it: a malformed counter starts again at 0.
  if f[3] and (is_integer(f[4]) and tonumber(f[4]) or 0) + 1 > max_losses then
    poison = poison + 1
  end
end
local old = old_dead(k, ARGV[1], now, math.max(tonumber(ARGV[4]), DEAD_TRIM_PER_DEATH * poison),
  poison)
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
drop_old_dead(k, ARGV[1], old, now)
return {tally.lost, tally.dead}
