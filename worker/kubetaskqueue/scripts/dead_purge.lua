-- dead_purge: a human deletes dead tasks for good.
-- KEYS: 1 dead
-- ARGV: 1 task key prefix, then ids
-- Returns how many were deleted (ids not in dead are skipped).
for i = 2, #ARGV do  -- read every hash before the first write
  read_task('EXISTS', ARGV[1] .. ARGV[i])
end
local n = 0
for i = 2, #ARGV do
  if redis.call('LREM', KEYS[1], 1, ARGV[i]) == 1 then
    redis.call('DEL', ARGV[1] .. ARGV[i])
    n = n + 1
  end
end
return n
