--[[ bulk_advance: a bulk operation has handled every run before its new cursor (or all).

Only a running operation moves: a stopped one stays stopped. Safe to repeat.

KEYS[1]  bulk    hash  <p>:bulk:<id>
KEYS[2]  runs    hash  <p>:bulk:<id>:runs

ARGV[1]  cursor: JSON [created_at, run id], the last position handled
ARGV[2]  now, ms
ARGV[3]  "1" when there is nothing left (the operation is done)
ARGV[4]  keep, ms: a finished operation and its per-run outcomes expire this long after it ends

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
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  return 'done'
end
return 'running'
