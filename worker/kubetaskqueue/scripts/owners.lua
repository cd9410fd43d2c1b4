-- owners: who holds the topic's leases right now (read-only), for the
-- operator's pod-deletion costs and its lost-worker check.
-- KEYS: 1 work
-- ARGV: 1 task key prefix
-- Returns a flat list: manager id, leases held, ...
local count = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local owner = read_task('HGET', ARGV[1] .. id, 'owner')
  if owner and owner ~= '' then
    count[owner] = (count[owner] or 0) + 1
  end
end
local flat = {}
for owner, n in pairs(count) do
  flat[#flat + 1] = owner
  flat[#flat + 1] = n
end
return flat
