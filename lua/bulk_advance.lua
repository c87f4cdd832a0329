--[[ bulk_advance: a bulk operation has handled every run before its new cursor (or all).

Only a running operation moves: a stopped one stays stopped. Safe to repeat.

KEYS[1]  bulk    hash  <p>:bulk:<id>

ARGV[1]  cursor: JSON [created_at, run id], the last position handled
ARGV[2]  now, ms
ARGV[3]  "1" when there is nothing left (the operation is done)

Returns the state after the call (running, done, stopped; missing).
]]

local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  return 'missing'
end
if state ~= 'running' then
  return state
end
redis.call('HSET', KEYS[1], 'cursor', ARGV[1], 'updated_at', ARGV[2])
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], 'state', 'done', 'finished_at', ARGV[2])
  return 'done'
end
return 'running'
