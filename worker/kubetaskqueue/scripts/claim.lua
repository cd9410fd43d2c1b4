-- claim: ack the finished successes given (as ack.lua does, see _ack.lua), promote due
-- scheduled tasks, then lease up to `max` ready tasks, highest priority first, as many
-- as the topic's rate limit lets start now (none if paused). Acking and claiming in
-- one call halves a busy worker's round trips; the acks are written first, so the
-- slots they free are free in Redis too before the claim fills them.
-- KEYS: 1 input, 2 legacy input, 3 scheduled, 4 work, 5 stats, 6 dead, 7 rate, 8 controls,
--       9 events
-- ARGV: 1 task key prefix, 2 max, 3 lease ttl seconds, 4 owner (manager id), 5 promote limit,
--       6 done list prefix, 7 seconds the acked attempts ran in all ('' = not known),
--       then triples to ack: id, token, result JSON ('' = none)
-- Returns {seconds until this topic may have more to claim (the next scheduled task
-- is due, or the rate limit's next token if ready tasks wait for it), or -1; claimed;
-- the acks refused (fenced)} where claimed is a list of {id, token, attempts, payload,
-- num_retries, timeout_s, enqueued_at, ready_at, claimed_at, keep_result_s, priority}.
-- Each claim bumps the task's fencing token.
-- A task hash whose counters are not integers (edited by hand) goes dead at once.
-- Every task hash is read before the first write, so a script that aborts (a Redis
-- Cluster slot migrating under it) leaves nothing half-done.
-- The legacy input is the list versions before priorities used: ids an older
-- worker or producer still puts there during an upgrade join input here.
local prefix, ttl, owner = ARGV[1], tonumber(ARGV[3]), ARGV[4]
local promote = tonumber(ARGV[5])
local now = now_s()
local now_text = fmt(now)
local acks = ack_read(KEYS[4], prefix, ARGV[6], 8)
local input, legacy, scheduled, work, stats, rate = KEYS[1], KEYS[2], KEYS[3], KEYS[4],
  KEYS[5], KEYS[7]

-- Gates: everything that holds a claim back is decided here, before any task is read.
local max = tonumber(ARGV[2])
-- Paused: nothing is leased (in-flight tasks go on; resuming wakes the idle managers),
-- but due tasks still become ready, and the next due time keeps promotion going.
local paused = redis.call('HEXISTS', KEYS[8], 'paused') == 1
if paused then
  max = 0
end
local limit, relimit = nil, nil  -- the rate limit in force; its new state if one lapsed
local r = redis.call('HMGET', rate, 'interval', 'burst', 'tat', 'lapse')
if r[4] then
  limit = {interval = tonumber(r[1]), burst = tonumber(r[2]), tat = tonumber(r[3])}
  if not (tonumber(r[4]) and tonumber(r[4]) > now and limit.interval and limit.burst) then
    -- a declaration lapsed (its manager is gone), or a field was edited: recount
    local best, lapsed = limit_in_force(redis.call('HGETALL', rate), now)
    relimit = {best = best, lapsed = lapsed}
    if best then
      limit.interval, limit.burst = best.interval, best.burst
    else
      limit = nil
    end
  end
end
local base = now
if limit and not paused then
  local tokens
  tokens, base = tokens_at(limit, now)
  max = math.min(max, tokens)
end

-- Reads: due scheduled ids and legacy ids with their priorities, and the head of input.
local moving = {}  -- {id, score, from}, to join input (or be claimed straight away)
local tails, seen = {}, {}  -- priority -> the last score given out in its band
local function gather(ids, from)
  for _, id in ipairs(ids) do
    local f = read_task('HMGET', prefix .. id, 'priority', 'id')
    local p = priority_of(f[1])
    if not seen[id] and (f[2] or read_task('EXISTS', prefix .. id) == 1) then
      seen[id] = true
      tails[p] = (tails[p] and tails[p] + 1) or join_score(input, p, false)
      moving[#moving + 1] = {id = id, score = tails[p], from = from}
    end  -- else purged meanwhile: dropping the id loses nothing
  end
end
-- The first scheduled task: when none is due (the usual case) it is also the next due
-- one at the end, as a claim adds nothing to scheduled.
local first_due = redis.call('ZRANGE', scheduled, 0, 0, 'WITHSCORES')
local due = {}
if first_due[2] and tonumber(first_due[2]) <= now then
  due = redis.call('ZRANGEBYSCORE', scheduled, '-inf', now, 'LIMIT', 0, promote)
end
gather(due, 'scheduled')
local old = {}
if #due < promote then
  old = redis.call('LRANGE', legacy, 0, promote - #due - 1)
  gather(old, 'legacy')
end
local candidates = {}
if max > 0 and #moving == 0 then  -- the usual case: the head of input, in order
  for _, id in ipairs(redis.call('ZRANGE', input, 0, max - 1)) do
    candidates[#candidates + 1] = {id = id, from = 'input'}
  end
elseif max > 0 then  -- merge the ids joining input by score
  local head = redis.call('ZRANGE', input, 0, max - 1, 'WITHSCORES')
  for i = 1, #head, 2 do
    candidates[#candidates + 1] = {id = head[i], score = tonumber(head[i + 1]), from = 'input'}
  end
  for _, m in ipairs(moving) do
    candidates[#candidates + 1] = m
  end
  for i, c in ipairs(candidates) do
    c.order = i
  end
  -- Ties (only hand-made scores tie) keep input's rank order, so the input ids taken
  -- are exactly its first ones.
  table.sort(candidates, function(a, b)
    return a.score < b.score or (a.score == b.score and a.order < b.order)
  end)
end
local take, from_input = {}, 0
for i = 1, math.min(max, #candidates) do
  local c = candidates[i]
  c.f = read_task('HMGET', prefix .. c.id, 'token', 'attempts', 'payload', 'num_retries',
    'timeout_s', 'enqueued_at', 'ready_at', 'priority', 'id', 'keep_result_s')
  c.exists = c.f[9] or read_task('EXISTS', prefix .. c.id) == 1
  take[i] = c
  if c.from == 'input' then from_input = from_input + 1 end
end

-- Writes.
local refused = ack_write(acks, work, stats, rate, prefix, ARGV[6], now, tonumber(ARGV[7]))
if relimit then
  store_limit(rate, relimit.best, relimit.lapsed)
end
if #due > 0 then
  redis.call('ZREMRANGEBYRANK', scheduled, 0, #due - 1)
end
if #old > 0 then
  redis.call('LTRIM', legacy, #old, -1)
end
if from_input > 0 then  -- the claimed input ids are its first ones, by score
  redis.call('ZREMRANGEBYRANK', input, 0, from_input - 1)
end
local taken = {}
for _, c in ipairs(take) do
  taken[c.id] = true
end
local joining = {}
for _, m in ipairs(moving) do
  if not taken[m.id] then
    joining[#joining + 1], joining[#joining + 2] = score_text(m.score), m.id
  end
end
zadd_all(input, joining)
local claimed, dropped, leases = {}, false, {}
for _, c in ipairs(take) do
  local id, key, f = c.id, prefix .. c.id, c.f
  if not c.exists then
    dropped = true  -- purged meanwhile: dropping the id loses nothing
  elseif not (is_integer(f[1]) and is_integer(f[2])) then
    dropped = true
    redis.call('LPUSH', KEYS[6], id)
    redis.call('HSET', key, 'last_error', 'malformed task: token or attempts is not an integer',
      'failed_at', fmt(now), 'dead_at', fmt(now))
    redis.call('HINCRBY', stats, 'failed', 1)
    emit('TASK_DEAD', id, '', now, 'malformed task: token or attempts is not an integer')
  else
    local token, attempts = (tonumber(f[1]) or 0) + 1, (tonumber(f[2]) or 0) + 1
    redis.call('HSET', key, 'token', token, 'attempts', attempts, 'owner', owner,
      'claimed_at', now_text)
    leases[#leases + 1], leases[#leases + 2] = now + ttl, id
    emit('TASK_START', id, attempts, now, owner)
    claimed[#claimed + 1] = {id, tostring(token), tostring(attempts), f[3] or '', f[4] or '0',
      f[5] or '', f[6] or '0', f[7] or '0', now_text, f[10] or '',
      tostring(priority_of(f[8]))}
  end
end
if #claimed > 0 then
  zadd_all(work, leases)
  redis.call('HINCRBY', stats, 'started', #claimed)
end

-- When to claim again: a dropped id leaves room now; ready tasks the limit held back
-- wait for its next token; else the next scheduled task.
local again = nil
if limit and not paused then
  local tat = base + #claimed * limit.interval
  if #claimed > 0 then
    redis.call('HSET', rate, 'tat', fmt(tat))
  end
  if redis.call('ZCARD', input) > 0 then
    again = math.max(0, tat - (limit.burst - 1) * limit.interval - now)
  end
end
if dropped then
  again = 0
end
local head = first_due
if #due > 0 then
  head = redis.call('ZRANGE', scheduled, 0, 0, 'WITHSCORES')
end
if head[2] then
  local due_in = math.max(0, tonumber(head[2]) - now)
  again = again and math.min(again, due_in) or due_in
end
return {again and fmt(again) or '-1', claimed, refused}
