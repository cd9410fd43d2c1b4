-- Shared by every script (store.py prepends it). Lua 5.1 subset, as Redis runs.
-- Times come from the Redis server clock so pod clocks never decide a lease.
local function now_s()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function fmt(x)
  return string.format('%.6f', x)
end

-- A hash field HINCRBY accepts: missing, or a base-10 integer.
local function is_integer(v)
  return v == false or string.match(v, '^%-?%d+$') ~= nil
end

-- Task hashes are not in KEYS (only the topic's queues are). While a Redis
-- Cluster reshard moves the topic's slot, a hash may already be on the new master
-- and cannot be read here: refuse with TRYAGAIN, which the cluster client retries.
-- Every script reads its task hashes with this before its first write, so a
-- refusal leaves nothing half-done.
local function read_task(command, key, ...)
  local reply = redis.pcall(command, key, ...)
  if type(reply) == 'table' and reply.err then
    error({err = 'TRYAGAIN ' .. reply.err})
  end
  return reply
end

-- True when `id` is in work and its lease token is still `token`.
local function holds_lease(work, key, id, token)
  return redis.call('ZSCORE', work, id) and read_task('HGET', key, 'token') == token
end

-- Scripts that emit events pass the topic's event stream as their LAST key.
-- EVENTS_MAX_LEN is set by store.py in a line it puts before this prelude
-- (0 = events off).
local function last_line(text)
  local last = ''
  for line in string.gmatch(text, '[^\n]+') do
    if string.match(line, '%S') then last = line end
  end
  return string.sub(last, 1, 300)
end

-- emit() only buffers: store.py's loader runs each script body as a function and
-- then calls flush_events(), so a call writes all its events in one XADD, and a
-- script that aborts writes none. The buffer is flat, five strings an event (no
-- table each), and a call's events mostly share one time, formatted once.
local event_buffer, event_time, event_time_text = {}, nil, ''

local function emit(kind, id, attempt, now, detail)
  if EVENTS_MAX_LEN > 0 then
    if now ~= event_time then event_time, event_time_text = now, fmt(now) end
    local i = #event_buffer
    event_buffer[i + 1], event_buffer[i + 2], event_buffer[i + 3] = kind, id, tostring(attempt or '')
    event_buffer[i + 4], event_buffer[i + 5] = event_time_text, detail or ''
  end
end

-- Events held by a stream entry: a batch says how many ('n' is its first field);
-- a single event, the layout every version reads, is one.
local function entry_events(fields)
  if fields[1] == 'n' then return tonumber(fields[2]) or 1 end
  return 1
end

-- The stream keeps about EVENTS_MAX_LEN events however many an entry holds: the
-- counter <events>:held (same slot) counts them, and once it is 1/16 over the cap
-- the oldest entries go, so trimming is amortized like XADD MAXLEN ~ (the stream
-- then holds the cap or a little less: entries go whole). The counter
-- is best effort (pcall: a reshard may have moved it; the stream then goes
-- untrimmed for that call); one that is new starts from XLEN, which counts a
-- previous version's single-event entries exactly.
local function trim_events(key, new_id, n)
  local counter = key .. ':held'
  local held = redis.pcall('INCRBY', counter, n)
  if type(held) ~= 'number' then return end
  if held == n then
    local len = redis.call('XLEN', key)
    if len > 1 then held = redis.call('INCRBY', counter, len - 1) end
  end
  if held <= EVENTS_MAX_LEN + math.max(16, math.floor(EVENTS_MAX_LEN / 16)) then return end
  -- Drop the oldest entries until the rest hold at most the cap; never the one
  -- just added (reaching it means all before it went, or the counter was high).
  local after, first_kept, count = '-', nil, 1
  repeat
    -- Pages grow: one big entry (a bulk enqueue's) is often enough, small ones take more.
    local page = redis.call('XRANGE', key, after, '+', 'COUNT', count)
    count = math.min(count * 2, 512)
    for _, entry in ipairs(page) do
      if entry[1] == new_id or held <= EVENTS_MAX_LEN then
        first_kept = entry[1]
        break
      end
      held = held - entry_events(entry[2])
    end
    after = '(' .. page[#page][1]
  until first_kept
  if first_kept == new_id then held = n end
  redis.call('XTRIM', key, 'MINID', first_kept)
  redis.call('SET', counter, math.max(held, n))  -- the new entry stays
end

-- One entry for all the events the script emitted: the single-event layout for
-- one, else 'n' and 'events', a JSON array of type, id, attempt, time, detail,
-- five strings an event, in the order they happened.
local function flush_events()
  local n = #event_buffer / 5
  if n == 0 then return end
  local key = KEYS[#KEYS]
  local e, new_id = event_buffer, nil
  if n == 1 then
    new_id = redis.call('XADD', key, '*', 'type', e[1], 'id', e[2], 'attempt', e[3],
      'time', e[4], 'detail', e[5])
  else
    new_id = redis.call('XADD', key, '*', 'n', n, 'events', cjson.encode(e))
  end
  event_buffer = {}
  trim_events(key, new_id, n)
end

-- Wake up to `n` idle managers blocked on the topic's wake-up list; a woken one
-- claims, or learns the new earliest due time and sleeps until then. The list
-- is capped: 64 pending hints wake every manager a topic is likely to have (one
-- LPUSH; the LTRIM only once the list passes the cap).
local function wake_managers(wake, n)
  local hints = {}
  for i = 1, math.min(n, 64) do
    hints[i] = '1'
  end
  if redis.call('LPUSH', wake, unpack(hints)) > 64 then
    redis.call('LTRIM', wake, 0, 63)
  end
end

-- Ready tasks (input) are a sorted set read from the lowest score: one band of
-- PRIORITY_BAND scores per priority, a higher priority at lower scores, so
-- ZRANGE input 0 n-1 holds the next n to run. A task joins its band after the
-- last member (FIFO), or before the first (`front`: a task whose worker was lost
-- or that was released had waited its turn once). An empty band starts at its
-- middle, so each side has room for 2^44 joins in a row; scores stay integers
-- below 2^53, exact in a double, and are written with '%.0f' (tostring rounds).
local PRIORITY_BAND = 35184372088832  -- 2^45
local PRIORITY_MAX = 100  -- priorities run from -100 to 100 (manager.py checks it too)

local function score_text(x)
  return string.format('%.0f', x)
end

-- A task hash's priority; missing or hand-edited values count as the default, 0.
local function priority_of(v)
  local p = tonumber(v)
  if p and p == math.floor(p) and math.abs(p) <= PRIORITY_MAX then return p end
  return 0
end

-- The band a score lies in, as -priority.
local function band_of(score)
  return math.floor((score + PRIORITY_BAND / 2) / PRIORITY_BAND)
end

-- The score at which a task of priority `p` joins `input` (O(log n)).
local function join_score(input, p, front)
  local mid = -p * PRIORITY_BAND
  if not front then
    -- Usually `p` is the lowest priority queued (all at 0, say): its band ends the set.
    local last = redis.call('ZREVRANGE', input, 0, 0, 'WITHSCORES')
    if not last[2] then return mid end
    local score = tonumber(last[2])
    if band_of(score) == -p then return score + 1 end
    if band_of(score) < -p then return mid end  -- only higher priorities are queued
  end
  local lo, hi = score_text(mid - PRIORITY_BAND / 2), score_text(mid + PRIORITY_BAND / 2 - 1)
  local edge
  if front then
    edge = redis.call('ZRANGEBYSCORE', input, lo, hi, 'WITHSCORES', 'LIMIT', 0, 1)
  else
    edge = redis.call('ZREVRANGEBYSCORE', input, hi, lo, 'WITHSCORES', 'LIMIT', 0, 1)
  end
  if not edge[2] then return mid end
  return tonumber(edge[2]) + (front and -1 or 1)
end

local function join_input(input, id, p, front)
  redis.call('ZADD', input, score_text(join_score(input, p, front)), id)
end

-- ZADD `pairs` (score, member, score, member...) in a few calls, not one per member.
local function zadd_all(key, pairs)
  for i = 1, #pairs, 400 do
    redis.call('ZADD', key, unpack(pairs, i, math.min(#pairs, i + 399)))
  end
end

-- Make `id` ready after `delay` seconds (0 = now, at the back of its priority),
-- without waking anyone.
local function place_ready(input, scheduled, key, id, now, delay, priority)
  if delay > 0 then
    redis.call('ZADD', scheduled, now + delay, id)
    redis.call('HSET', key, 'ready_at', fmt(now + delay))
  else
    join_input(input, id, priority, false)
    redis.call('HSET', key, 'ready_at', fmt(now))
  end
end

-- Whether a failed attempt of the task in `key` is its last one; and its attempts.
local function retries_spent(key)
  local f = redis.call('HMGET', key, 'attempts', 'num_retries')
  local attempts = tonumber(f[1]) or 0
  return attempts > (tonumber(f[2]) or 0), attempts
end

-- A failed attempt: retry after `delay` while retries remain, else bury in dead.
-- The id must already be out of the work set. Returns 'retried' or 'dead'.
local function settle_failure(k, key, id, now, err, delay, force_dead)
  local spent, attempts = retries_spent(key)
  redis.call('HSET', key, 'last_error', err, 'failed_at', fmt(now), 'owner', '')
  if force_dead or spent then
    redis.call('LPUSH', k.dead, id)
    redis.call('HSET', key, 'dead_at', fmt(now))
    redis.call('HINCRBY', k.stats, 'failed', 1)
    emit('TASK_DEAD', id, attempts, now, last_line(err))
    return 'dead'
  end
  place_ready(k.input, k.scheduled, key, id, now, delay,
    priority_of(redis.call('HGET', key, 'priority')))
  wake_managers(k.wake, 1)
  redis.call('HINCRBY', k.stats, 'retried', 1)
  emit('TASK_RETRY', id, attempts, now, 'in ' .. fmt(delay) .. 's')
  return 'retried'
end


-- A lost worker (its pod died, or its lease ran out): the task goes back to the
-- front of its priority in input at once and the attempt is not counted, so a node
-- drain or an OOM kill spends none of its num_retries. Each loss is counted in the hash;
-- past `max_losses` the task is poison (it keeps killing its worker) and dies.
-- `kind` is the event that says how the loss was seen. The id must already be
-- out of the work set. Returns 'lost' or 'dead'.
local function settle_worker_loss(k, key, id, now, kind, reason, max_losses)
  -- A hand-edited counter must not abort the script after the id left work.
  local f = redis.call('HMGET', key, 'losses', 'attempts', 'priority')
  if not is_integer(f[1]) then redis.call('HSET', key, 'losses', 0) end
  if not is_integer(f[2]) then redis.call('HSET', key, 'attempts', 1) end
  local losses = redis.call('HINCRBY', key, 'losses', 1)
  local attempts = tonumber(redis.call('HGET', key, 'attempts')) or 0
  emit(kind, id, attempts, now, reason)
  redis.call('HINCRBY', k.stats, 'lost', 1)
  if losses > max_losses then
    local why = 'poison: lost its worker ' .. losses .. ' times (max_worker_losses '
      .. max_losses .. '); last: ' .. reason
    return settle_failure(k, key, id, now, why, 0, true)
  end
  redis.call('HINCRBY', key, 'attempts', -1)
  redis.call('HSET', key, 'owner', '', 'last_error', reason, 'ready_at', fmt(now))
  join_input(k.input, id, priority_of(f[3]), true)
  wake_managers(k.wake, 1)
  return 'lost'
end

-- Rate limits. A topic's rate hash holds each manager's declaration,
-- 'd:<manager id>' = '<lapses at> <interval s> <burst> <slots> <limit text>',
-- renewed by its heartbeat; the limit in force, the lowest declared (the longest
-- interval between starts): 'interval', 'burst', 'limit', 'slots' (the fewest
-- slots of its declarers), and 'lapse', when the first live declaration lapses
-- (absent: nothing in force; the other fields then say what was last in force,
-- for the operator); 'tat', the token bucket's state as GCRA keeps it: when the
-- bucket would next be empty were no token spent meanwhile.

-- The limit the live declarations in `flat` (an HGETALL) put in force, or nil,
-- and the names of the lapsed ones.
local function limit_in_force(flat, now)
  local best, lapsed = nil, {}
  for i = 1, #flat, 2 do
    if string.sub(flat[i], 1, 2) == 'd:' then
      local at, interval, burst, slots, text =
        string.match(flat[i + 1], '^(%S+) (%S+) (%S+) (%S+) (.*)$')
      at, interval = tonumber(at), tonumber(interval)
      burst, slots = tonumber(burst), tonumber(slots)
      if not (at and interval and burst and slots) or at <= now or interval <= 0 or burst < 1 then
        lapsed[#lapsed + 1] = flat[i]
      elseif not best then
        best = {interval = interval, burst = burst, text = text, slots = slots, lapse = at}
      else
        if interval > best.interval then
          best.interval, best.burst, best.text = interval, burst, text
        end
        best.slots, best.lapse = math.min(best.slots, slots), math.min(best.lapse, at)
      end
    end
  end
  return best, lapsed
end

-- Write what limit_in_force found (nil: nothing in force any more).
local function store_limit(rate, best, lapsed)
  if #lapsed > 0 then
    redis.call('HDEL', rate, unpack(lapsed))
  end
  if best then
    redis.call('HSET', rate, 'interval', string.format('%.17g', best.interval),
      'burst', best.burst, 'limit', best.text, 'slots', best.slots, 'lapse', fmt(best.lapse))
  else
    redis.call('HDEL', rate, 'lapse')
  end
end

-- Tokens in the bucket at `now` (whole starts allowed), and the time GCRA counts from.
local function tokens_at(limit, now)
  local base = math.max(limit.tat or now, now)
  return math.max(0, math.floor(limit.burst - (base - now) / limit.interval)), base
end

-- Dead-queue retention. DEAD_MAX_TASKS (0 = no cap) and DEAD_TTL_S (0 = kept until
-- purged) are set by store.py in its header line, as EVENTS_MAX_LEN. The dead list
-- is newest first, so the oldest dead tasks are its tail. A script that buries
-- reads the tail first (old_dead, reads only, before its first write), then drops
-- what is over the cap or past the age (drop_old_dead): a few a death
-- (DEAD_TRIM_PER_DEATH), more in the reaper's periodic sweep.

-- Reads only: up to `limit` ids at the dead tail, oldest first, that may have to
-- go once `deaths` more tasks died in this script; each {id, past the age}.
local function old_dead(k, prefix, now, limit, deaths)
  local found = {}
  if limit <= 0 then return found end
  local len = redis.call('LLEN', k.dead)
  local over = DEAD_MAX_TASKS > 0 and len + deaths - DEAD_MAX_TASKS or 0
  if over <= 0 and DEAD_TTL_S <= 0 then return found end
  for i = 1, math.min(limit, len) do
    local id = redis.call('LINDEX', k.dead, -i)
    local f = read_task('HMGET', prefix .. id, 'id', 'dead_at')
    -- An id without its hash is a leftover: nothing is lost by dropping it.
    local expired = not f[1] or (DEAD_TTL_S > 0 and (tonumber(f[2]) or now) <= now - DEAD_TTL_S)
    if i > over and not expired then break end
    found[i] = {id, expired}
  end
  return found
end

-- Drop what old_dead found, oldest first, while the dead queue is over its cap or
-- the task is past the age; its hash goes too. Counted as the topic's dead_dropped.
local function drop_old_dead(k, prefix, old, now)
  local dropped = 0
  for _, c in ipairs(old) do
    local over = DEAD_MAX_TASKS > 0 and redis.call('LLEN', k.dead) > DEAD_MAX_TASKS
    if not (over or c[2]) or redis.call('LINDEX', k.dead, -1) ~= c[1] then break end
    redis.call('RPOP', k.dead)
    redis.call('DEL', prefix .. c[1])
    dropped = dropped + 1
    emit('TASK_DROPPED', c[1], '', now, over and ('over dead_max_tasks ' .. DEAD_MAX_TASKS)
      or ('dead longer than dead_ttl_s ' .. DEAD_TTL_S))
  end
  if dropped > 0 then
    redis.call('HINCRBY', k.stats, 'dead_dropped', dropped)
  end
end

-- Where a task is: 'done' (succeeded, result kept), 'work', 'scheduled', 'dead' or
-- 'input'; nil when its hash is gone. `f` is HMGET key 'id', 'done_at', 'dead_at'.
-- Input is a sorted set (O(1) membership); a task found nowhere is in the list an
-- older version kept input in (k.legacy: every script moves a task atomically).
local function task_state(k, id, f)
  if not f[1] then return nil end
  if f[2] then return 'done' end
  if redis.call('ZSCORE', k.input, id) then return 'input' end
  if redis.call('ZSCORE', k.work, id) then return 'work' end
  if redis.call('ZSCORE', k.scheduled, id) then return 'scheduled' end
  if f[3] then return 'dead' end
  return 'input'
end

-- Take a waiting task out of input (O(log n); O(n) in an older version's list);
-- returns 1, or 0 if absent.
local function remove_from_input(k, id)
  if redis.call('ZREM', k.input, id) == 1 then return 1 end
  return redis.call('LREM', k.legacy, 1, id)
end
