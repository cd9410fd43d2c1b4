-- drop: forget an empty topic: its counters, events, controls and wake-up hints.
-- KEYS: 1 input, 2 scheduled, 3 work, 4 dead, 5 wake, 6 stats, 7 controls, 8 events
-- Returns 1 when dropped, 0 (nothing deleted) while any task is in input, scheduled,
-- work or dead. Redis deletes an emptied list or sorted set, so EXISTS is the check.
if redis.call('EXISTS', KEYS[1], KEYS[2], KEYS[3], KEYS[4]) > 0 then
  return 0
end
redis.call('DEL', KEYS[5], KEYS[6], KEYS[7], KEYS[8])
return 1
