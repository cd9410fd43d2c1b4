-- declare_limit: a manager declares (or withdraws) its rate limit of a topic; its
-- heartbeat renews the declaration, which lapses `lapse` seconds after the last one.
-- The lowest live declaration is in force for every manager of the topic.
-- KEYS: 1 rate
-- ARGV: 1 manager id, 2 lapse seconds, then to declare: 3 seconds between starts,
--       4 burst, 5 slots, 6 limit text (none of them to withdraw)
-- Returns {the limit text in force or '', then pairs of every live declaration:
--          manager id, limit text}.
local now = now_s()
local field = 'd:' .. ARGV[1]
local flat = redis.call('HGETALL', KEYS[1])
local own = nil
if ARGV[3] then
  own = table.concat({fmt(now + tonumber(ARGV[2])), ARGV[3], ARGV[4], ARGV[5], ARGV[6]}, ' ')
end
local mine = false
for i = 1, #flat, 2 do
  if flat[i] == field then
    flat[i + 1], mine = own or '', true
  end
end
if own and not mine then
  flat[#flat + 1], flat[#flat + 2] = field, own
end
local best, lapsed = limit_in_force(flat, now)
if own then
  redis.call('HSET', KEYS[1], field, own)
end
store_limit(KEYS[1], best, lapsed)  -- a withdrawn declaration reads as lapsed
local out = {best and best.text or ''}
for i = 1, #flat, 2 do
  if string.sub(flat[i], 1, 2) == 'd:' and flat[i + 1] ~= '' then
    local at, text = string.match(flat[i + 1], '^(%S+) %S+ %S+ %S+ (.*)$')
    if tonumber(at) and tonumber(at) > now then
      out[#out + 1] = string.sub(flat[i], 3)
      out[#out + 1] = text
    end
  end
end
return out
