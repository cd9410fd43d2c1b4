-- Acking successes: shared by ack.lua and claim.lua (which acks the finished before
-- it claims, in the same call). store.py puts it after the prelude of those two.
-- The acks are ARGV[first..] triples: id, token, result JSON ('' = none: only tasks
-- that keep their result send one). A task enqueued with keep_result_s is kept, as
-- done with its result, for that long; its done list (which expires with it) wakes
-- the result's waiters; other tasks are deleted.

-- Redis calls `command key ...items` in a few calls, not one per item.
local function call_many(command, key, items)
  local replies = {}
  for i = 1, #items, 400 do
    local args = {}
    if key then args[1] = key end
    for j = i, math.min(#items, i + 399) do args[#args + 1] = items[j] end
    local reply = redis.call(command, unpack(args))
    if type(reply) == 'table' then
      for _, v in ipairs(reply) do replies[#replies + 1] = v end
    end
  end
  return replies
end

-- Reads only (the script's reads come before its first write): which acks still hold
-- their lease, and how long each kept result stays.
local function ack_read(work, prefix, done_prefix, first)
  local acks = {}
  local ids = {}
  for i = first, #ARGV, 3 do
    acks[#acks + 1] = {id = ARGV[i], token = ARGV[i + 1], result = ARGV[i + 2]}
    ids[#ids + 1] = ARGV[i]
  end
  if #ids == 0 then return acks end
  local scores = call_many('ZMSCORE', work, ids)
  for j, a in ipairs(acks) do
    if scores[j] then
      local f = read_task('HMGET', prefix .. a.id, 'token', 'keep_result_s')
      a.held = f[1] == a.token
      if a.held and a.result ~= '' then
        a.keep = tonumber(f[2])
        read_task('EXISTS', done_prefix .. a.id)
      end
    end
  end
  return acks
end

-- The writes: finish the held acks, count the refused (fenced: nothing changed for
-- them); returns the refused ids. `ran` is how long the attempts ran in all (nil =
-- not known): a moving average of run time, each task weighing 5 %, for topics that
-- have (or had) a rate limit; the operator sizes their pods by it.
local function ack_write(acks, work, stats, rate, prefix, done_prefix, now, ran)
  local refused, done, deleted = {}, {}, {}
  for _, a in ipairs(acks) do
    local key = prefix .. a.id
    if a.held then
      done[#done + 1] = a.id
      if a.keep and a.keep > 0 then
        -- Whole milliseconds PEXPIRE takes; enqueue caps keep_result_s at a year.
        local ms = string.format('%d', math.ceil(math.min(a.keep, 31536000) * 1000))
        local list = done_prefix .. a.id
        redis.call('HSET', key, 'result', a.result, 'done_at', fmt(now), 'owner', '')
        redis.call('PEXPIRE', key, ms)
        redis.call('LPUSH', list, '1')
        redis.call('PEXPIRE', list, ms)
      else
        deleted[#deleted + 1] = key
      end
      emit('TASK_COMPLETION', a.id, '', now, '')
    else
      refused[#refused + 1] = a.id
      emit('TASK_FENCED', a.id, '', now, 'ack refused: lease token ' .. a.token .. ' is stale')
    end
  end
  if #done > 0 then
    call_many('ZREM', work, done)
    redis.call('HINCRBY', stats, 'completed', #done)
  end
  if #deleted > 0 then
    call_many('DEL', nil, deleted)
  end
  if #refused > 0 then
    redis.call('HINCRBY', stats, 'fenced', #refused)
  end
  local n = #acks
  if n > 0 and ran and ran >= 0 then
    local r = redis.call('HMGET', rate, 'limit', 'mean_run_s')
    if r[1] then
      local mean, batch = tonumber(r[2]), ran / n
      mean = mean and mean + (1 - 0.95 ^ n) * (batch - mean) or batch
      redis.call('HSET', rate, 'mean_run_s', fmt(mean))
    end
  end
  return refused
end
