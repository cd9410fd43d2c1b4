-- ack: attempts that succeeded; delete their tasks. One call acks a batch.
-- A task enqueued with keep_result_s is kept instead, as done with its result, for
-- that long; its done list (which expires with it) wakes the result's waiters.
-- KEYS: 1 work, 2 stats, 3 rate, 4 events
-- ARGV: 1 task key prefix, 2 done list prefix, 3 seconds the batch's attempts ran in
--       all ('' = not known), then triples: id, token, result JSON ('' = none: only
--       tasks that keep their result send one)
-- Returns the ids refused because their lease is no longer ours (fenced: counted,
-- nothing changed for them).
local now = now_s()
local prefix, done_prefix = ARGV[1], ARGV[2]
-- Every undeclared key is read before the first write (see read_task).
local held, keep = {}, {}
for i = 4, #ARGV, 3 do
  local id = ARGV[i]
  held[i] = holds_lease(KEYS[1], prefix .. id, id, ARGV[i + 1])
  if held[i] and ARGV[i + 2] ~= '' then
    keep[i] = tonumber(read_task('HGET', prefix .. id, 'keep_result_s'))
    read_task('EXISTS', done_prefix .. id)
  end
end
local refused, completed = {}, 0
for i = 4, #ARGV, 3 do
  local id = ARGV[i]
  local key = prefix .. id
  if held[i] then
    redis.call('ZREM', KEYS[1], id)
    if keep[i] and keep[i] > 0 then
      -- Whole milliseconds PEXPIRE takes; enqueue caps keep_result_s at a year.
      local ms = string.format('%d', math.ceil(math.min(keep[i], 31536000) * 1000))
      local done = done_prefix .. id
      redis.call('HSET', key, 'result', ARGV[i + 2], 'done_at', fmt(now), 'owner', '')
      redis.call('PEXPIRE', key, ms)
      redis.call('LPUSH', done, '1')
      redis.call('PEXPIRE', done, ms)
    else
      redis.call('DEL', key)
    end
    completed = completed + 1
    emit('TASK_COMPLETION', id, '', now, '')
  else
    refused[#refused + 1] = id
    emit('TASK_FENCED', id, '', now, 'ack refused: lease token ' .. ARGV[i + 1] .. ' is stale')
  end
end
if completed > 0 then
  redis.call('HINCRBY', KEYS[2], 'completed', completed)
end
if #refused > 0 then
  redis.call('HINCRBY', KEYS[2], 'fenced', #refused)
end
-- A moving average of run time, each task weighing 5 %, for topics that have (or had)
-- a rate limit: the operator sizes their pods by it.
local n, ran = (#ARGV - 3) / 3, tonumber(ARGV[3])
if n > 0 and ran and ran >= 0 then
  local r = redis.call('HMGET', KEYS[3], 'limit', 'mean_run_s')
  if r[1] then
    local mean, batch = tonumber(r[2]), ran / n
    mean = mean and mean + (1 - 0.95 ^ n) * (batch - mean) or batch
    redis.call('HSET', KEYS[3], 'mean_run_s', fmt(mean))
  end
end
return refused
