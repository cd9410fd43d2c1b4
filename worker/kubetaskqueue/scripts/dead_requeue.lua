-- dead_requeue: a human moves dead tasks back to input (at the back of their
-- priority) with a fresh retry budget.
-- KEYS: 1 input, 2 dead, 3 wake, 4 events
-- ARGV: 1 task key prefix, then ids
-- Returns how many were requeued (ids not in dead are skipped).
local now = now_s()
local priorities = {}
for i = 2, #ARGV do  -- read every hash before the first write
  priorities[i] = priority_of(read_task('HGET', ARGV[1] .. ARGV[i], 'priority'))
end
local n = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  if redis.call('LREM', KEYS[2], 1, id) == 1 then
    local key = ARGV[1] .. id
    redis.call('HSET', key, 'attempts', 0, 'ready_at', fmt(now))
    redis.call('HDEL', key, 'dead_at')
    join_input(KEYS[1], id, priorities[i], false)
    emit('TASK_ENQUEUE', id, 0, now, 'requeued from dead')
    n = n + 1
  end
end
if n > 0 then
  wake_managers(KEYS[3], 1)
end
return n
