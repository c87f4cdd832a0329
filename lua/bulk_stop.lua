--[[ bulk_stop: stop a running bulk operation; its job stops before its next run.

Safe to repeat: an operation that is not running is left as it is.

KEYS[1]  bulk    hash  <p>:bulk:<id>
KEYS[2]  runs    hash  <p>:bulk:<id>:runs

ARGV[1]  now, ms
ARGV[2]  keep, ms: the stopped operation and its per-run outcomes expire this long after

Returns the state before the call (running, done, stopped; missing).
]]

local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  return 'missing'
end
if state == 'running' then
  redis.call('HSET', KEYS[1], 'state', 'stopped', 'finished_at', ARGV[1], 'updated_at', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return state
