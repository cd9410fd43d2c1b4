-- ack: the attempt succeeded; delete the task.
-- KEYS: 1 work, 2 stats, 3 events
-- ARGV: 1 task key prefix, 2 id, 3 token
-- Returns 1, or 0 when the lease is no longer ours (fenced: counted, nothing changed).
local key = ARGV[1] .. ARGV[2]
if not holds_lease(KEYS[1], key, ARGV[2], ARGV[3]) then
  redis.call('HINCRBY', KEYS[2], 'fenced', 1)
  emit('TASK_FENCED', ARGV[2], '', now_s(), 'ack refused: lease token ' .. ARGV[3] .. ' is stale')
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[2])
redis.call('DEL', key)
redis.call('HINCRBY', KEYS[2], 'completed', 1)
emit('TASK_COMPLETION', ARGV[2], '', now_s(), '')
return 1
