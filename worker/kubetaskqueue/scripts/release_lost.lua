-- release_lost: the operator saw these managers' pod die (deleted, evicted,
-- OOMKilled): their leases are worker losses now, not after the lease TTL.
-- The token is left as it is, so a worker that was in fact alive is fenced.
-- KEYS: 1 input, 2 scheduled, 3 work, 4 dead, 5 stats, 6 wake, 7 events
-- ARGV: 1 task key prefix, 2 reason, 3 max worker losses, 4.. manager ids
-- Returns {lost count, dead count}.
local now = now_s()
local k = {input = KEYS[1], scheduled = KEYS[2], dead = KEYS[4], stats = KEYS[5], wake = KEYS[6]}
local managers = {}
for i = 4, #ARGV do
  managers[ARGV[i]] = true
end
local ids = redis.call('ZRANGE', KEYS[3], 0, -1)
local theirs = {}
for _, id in ipairs(ids) do  -- read every hash before the first write
  if managers[read_task('HGET', ARGV[1] .. id, 'owner') or ''] then
    theirs[#theirs + 1] = id
  end
end
local tally = {lost = 0, dead = 0}
for _, id in ipairs(theirs) do
  redis.call('ZREM', KEYS[3], id)
  local outcome = settle_worker_loss(k, ARGV[1] .. id, id, now, 'TASK_WORKER_LOST', ARGV[2],
    tonumber(ARGV[3]))
  tally[outcome] = tally[outcome] + 1
end
return {tally.lost, tally.dead}
