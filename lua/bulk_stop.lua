--[[ bulk_stop: stop a running bulk operation; its job stops before its next run.

Safe to repeat: an operation that is not running is left as it is.

KEYS[1]  bulk    hash  <p>:bulk:<id>

ARGV[1]  now, ms

Returns the state before the call (running, done, stopped; missing).
]]

local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  return 'missing'
end
if state == 'running' then
  redis.call('HSET', KEYS[1], 'state', 'stopped', 'finished_at', ARGV[1], 'updated_at', ARGV[1])
end
return state
