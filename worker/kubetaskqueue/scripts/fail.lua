-- fail: the attempt failed; retry after a delay while retries remain, else dead.
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
redis.call('ZREM', KEYS[3], id)
local now = now_s()
emit('TASK_FAILURE', id, redis.call('HGET', key, 'attempts'), now, last_line(ARGV[4]))
local k = {input = KEYS[1], scheduled = KEYS[2], dead = KEYS[4], stats = KEYS[5], wake = KEYS[6]}
return settle_failure(k, key, id, now, ARGV[4], tonumber(ARGV[5]), ARGV[6] == '1')
