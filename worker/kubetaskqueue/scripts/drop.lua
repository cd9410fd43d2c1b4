-- drop: forget an empty topic: its counters, events, controls, rate limit state and
-- wake-up hints.
-- KEYS: 1 input, 2 scheduled, 3 work, 4 dead, 5 legacy input, 6 wake, 7 stats, 8 controls,
--       9 rate, 10 events (and its counter, events .. ':held')
-- Returns 1 when dropped, 0 (nothing deleted) while any task is in input (either),
-- scheduled, work or dead. Redis deletes an emptied list or sorted set, so EXISTS is
-- the check.
if redis.call('EXISTS', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]) > 0 then
  return 0
end
redis.call('DEL', KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[10] .. ':held')
return 1
