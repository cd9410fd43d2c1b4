-- fire_schedule: enqueue a schedule's task for one fire time, at most once per fire time,
-- and check in the caller's definition of the schedule.
-- store.py puts enqueue.lua in front of this, wrapped as `local function enqueue()`: a
-- fired task is enqueued exactly as any other, in the same atomic step as the check.
-- KEYS: enqueue's. ARGV: enqueue's (one task), then six more, read from the end:
--   state key (a hash in the topic's slot, not in KEYS: read with read_task before any
--   write, like a task hash), definition hash,
--   fire time ('' = only check in), the cursor the caller computed the fire time from,
--   missed (fire times skipped, for the record), live_s
-- State fields: since (first check-in), last_fire, last_missed; per definition
--   h: seen:h (its last check-in) and start:h (its fire times begin after this).
-- A definition's cursor is the latest of since, last_fire and start:h; only fire times
-- after it fire. start:h is set when h appears (not checked in for live_s) to the last
-- check-in of any other definition, so a changed schedule takes effect at its next fire
-- time, while a schedule nobody ran for a while catches up (the caller fires the latest
-- missed time once).
-- Returns {status, cursor, now}: 'fired'; 'checked' (nothing due); 'stale' (the cursor is
-- not the caller's: nothing written, recompute); 'exists' (a task with the fire time's id
-- is there already, enqueued by hand: it counts as the fire); 'full' (the topic is at
-- max_queued: the fire time passes without a task).
local n = #ARGV
local state, def, fire_arg, expected, missed, live_s =
  ARGV[n - 5], ARGV[n - 4], ARGV[n - 3], ARGV[n - 2], ARGV[n - 1], tonumber(ARGV[n])
local now = now_s()
local f = {}
local flat = read_task('HGETALL', state)
for i = 1, #flat, 2 do
  f[flat[i]] = tonumber(flat[i + 1])  -- a hand-edited non-number reads as missing
end
local since, last = f['since'] or now, f['last_fire']
local seen, start = f['seen:' .. def], f['start:' .. def]
if not seen or not start or seen < now - live_s then
  start = since
  for field, t in pairs(f) do
    if string.sub(field, 1, 5) == 'seen:' and field ~= 'seen:' .. def and t > start then
      start = t
    end
  end
end
local cursor = math.max(since, last or since, start)
local status = 'checked'
if fire_arg ~= '' then
  if fmt(cursor) ~= expected then
    return {'stale', fmt(cursor), fmt(now)}
  end
  local fire_at = tonumber(fire_arg)
  if fire_at > cursor and fire_at <= now then
    -- 'full': the topic is at max_queued; this fire time is skipped, not retried.
    local r = enqueue()
    status = (r[1] == 1 and 'fired') or (r[1] == -1 and 'full') or 'exists'
    redis.call('HSET', state, 'last_fire', fmt(fire_at), 'last_missed', missed)
    last, cursor = fire_at, fire_at
  end
end
redis.call('HSET', state, 'since', fmt(since), 'seen:' .. def, fmt(now),
  'start:' .. def, fmt(start))
-- Definitions gone for live_s whose last check-in precedes the last fire can no longer
-- move a cursor: forget them.
local floor = math.max(since, last or since)
for field, t in pairs(f) do
  local other = string.match(field, '^seen:(.+)$')
  if other and other ~= def and t <= floor and t < now - live_s then
    redis.call('HDEL', state, field, 'start:' .. other)
  end
end
return {status, fmt(cursor), fmt(now)}
