-- ack: attempts that succeeded; delete their tasks. One call acks a batch.
-- KEYS: 1 work, 2 stats, 3 rate, 4 events
-- ARGV: 1 task key prefix, 2 seconds the batch's attempts ran in all, then pairs: id, token
-- Returns the ids refused because their lease is no longer ours (fenced: counted,
-- nothing changed for them).
local now = now_s()
local held = {}
for i = 3, #ARGV, 2 do  -- read every hash before the first write
  held[i] = holds_lease(KEYS[1], ARGV[1] .. ARGV[i], ARGV[i], ARGV[i + 1])
end
local refused, completed = {}, 0
for i = 3, #ARGV, 2 do
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
-- A moving average of run time, each task weighing 5 %: the operator sizes a
-- rate-limited topic's pods by it.
local n, ran = (#ARGV - 2) / 2, tonumber(ARGV[2])
if n > 0 and ran and ran >= 0 then
  local mean = tonumber(redis.call('HGET', KEYS[3], 'mean_run_s'))
  local batch = ran / n
  mean = mean and mean + (1 - 0.95 ^ n) * (batch - mean) or batch
  redis.call('HSET', KEYS[3], 'mean_run_s', fmt(mean))
end
return refused
