-- pause: stop ('1') or resume ('0') claims from a topic.
-- KEYS: 1 controls, 2 wake, 3 events
-- ARGV: 1 '1' pause / '0' resume, 2 who asked (for the event)
-- Returns 1 if the state changed, 0 if the topic already was so.
-- A paused topic still takes enqueues and promotes due tasks; claim.lua leases nothing
-- from it. Resuming wakes the idle managers at once rather than at their next poll.
local now = now_s()
if ARGV[1] == '1' then
  if redis.call('HSETNX', KEYS[1], 'paused', fmt(now)) == 0 then
    return 0
  end
  emit('TOPIC_PAUSED', '', '', now, ARGV[2])
  return 1
end
if redis.call('HDEL', KEYS[1], 'paused') == 0 then
  return 0
end
wake_managers(KEYS[2], 64)
emit('TOPIC_RESUMED', '', '', now, ARGV[2])
return 1
