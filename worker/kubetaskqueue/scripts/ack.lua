-- ack: attempts that succeeded; delete their tasks. One call acks a batch.
-- KEYS: 1 work, 2 stats, 3 events
-- ARGV: 1 task key prefix, then pairs: id, token
-- Returns the ids refused because their lease is no longer ours (fenced: counted,
-- nothing changed for them).
local now = now_s()
local held = {}
for i = 2, #ARGV, 2 do  -- read every hash before the first write
  held[i] = holds_lease(KEYS[1], ARGV[1] .. ARGV[i], ARGV[i], ARGV[i + 1])
end
local refused, completed = {}, 0
for i = 2, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local key = ARGV[1] .. id
  if held[i] then
    redis.call('ZREM', KEYS[1], id)
    redis.call('DEL', key)
    completed = completed + 1
    emit('TASK_COMPLETION', id, '', now, '')
  else
    refused[#refused + 1] = id
    emit('TASK_FENCED', id, '', now, 'ack refused: lease token ' .. token .. ' is stale')
  end
end
if completed > 0 then
  redis.call('HINCRBY', KEYS[2], 'completed', completed)
end
if #refused > 0 then
  redis.call('HINCRBY', KEYS[2], 'fenced', #refused)
end
return refused
