-- task_delete: a human deletes one waiting task (scheduled, input or dead) for good.
-- A task in work is left alone: its processor is running and cannot be stopped
-- from here; a done one expires by itself.
-- KEYS: 1 input, 2 scheduled, 3 work, 4 dead, 5 legacy input (keys.py), 6 events
-- ARGV: 1 task key prefix, 2 id
-- Returns the state the task was in ('' = unknown); only the waiting ones were deleted.
local id = ARGV[2]
local key = ARGV[1] .. id
local k = {input = KEYS[1], scheduled = KEYS[2], work = KEYS[3], dead = KEYS[4],
  legacy = KEYS[5]}
local state = task_state(k, id, read_task('HMGET', key, 'id', 'done_at', 'dead_at'))
if state == 'scheduled' then
  redis.call('ZREM', k.scheduled, id)
elseif state == 'dead' then
  redis.call('LREM', k.dead, 1, id)
elseif state == 'input' then
  remove_from_input(k, id)
else
  return state or ''
end
redis.call('DEL', key)
emit('TASK_DELETED', id, '', now_s(), 'deleted by a human while ' .. state)
return state
