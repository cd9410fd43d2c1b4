-- extend: the heartbeat; renew the leases this manager still holds.
-- KEYS: 1 work
-- ARGV: 1 task key prefix, 2 lease ttl seconds, then pairs: id, token
-- Returns the ids whose lease was lost (expired and reaped, or taken over).
local prefix, ttl = ARGV[1], tonumber(ARGV[2])
local now = now_s()
local held = {}
for i = 3, #ARGV, 2 do  -- read every hash before the first write
  held[i] = holds_lease(KEYS[1], prefix .. ARGV[i], ARGV[i], ARGV[i + 1])
end
local lost = {}
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  if held[i] then
    redis.call('ZADD', KEYS[1], 'XX', now + ttl, id)
  else
    lost[#lost + 1] = id
  end
end
return lost
