-- fail: the attempt failed; retry after a delay while retries remain, else dead.
-- A death past dead_max_tasks / dead_ttl_s drops the oldest dead tasks (see the prelude).
-- KEYS: 1 input, 2 scheduled, 3 work, 4 dead, 5 stats, 6 wake, 7 events
-- ARGV: 1 task key prefix, 2 id, 3 token, 4 error text, 5 retry delay seconds,
--       6 '1' to bury now whatever retries remain (the task can never succeed)
-- Returns 'retried', 'dead', or 'fenced' (lease no longer ours: counted, nothing changed).
local id = ARGV[2]
local key = ARGV[1] .. id
if not holds_lease(KEYS[3], key, id, ARGV[3]) then
  redis.call('HINCRBY', KEYS[5], 'fenced', 1)
  emit('TASK_FENCED', id, '', now_s(), 'failure refused: lease token ' .. ARGV[3] .. ' is stale')
  return 'fenced'
end
local now = now_s()
local k = {input = KEYS[1], scheduled = KEYS[2], dead = KEYS[4], stats = KEYS[5], wake = KEYS[6]}
local bury = ARGV[6] == '1'
local spent, attempts = retries_spent(key)
-- Read before the first write: the dead tail this death may push out.
local old = old_dead(k, ARGV[1], now, (bury or spent) and DEAD_TRIM_PER_DEATH or 0, 1)
redis.call('ZREM', KEYS[3], id)
emit('TASK_FAILURE', id, attempts, now, last_line(ARGV[4]))
local outcome = settle_failure(k, key, id, now, ARGV[4], tonumber(ARGV[5]), bury)
drop_old_dead(k, ARGV[1], old, now)
return outcome
