--[[ bulk_record: the outcome of a bulk operation on one run, counted once.

Safe to repeat (a worker that crashed after acting on a run acts again, idempotently, and
records again): the first outcome recorded for a run stays, and counts once.

KEYS[1]  bulk    hash  <p>:bulk:<id>
KEYS[2]  runs    hash  <p>:bulk:<id>:runs   run id -> "<outcome> <detail>"

ARGV[1]  run id
ARGV[2]  outcome: done | failed | skipped
ARGV[3]  detail (the new run id of a replay, or why it failed)

Returns the outcome stored for the run (this call's, or the first one's).
]]

if redis.call('EXISTS', KEYS[1]) == 0 then
  return 'missing'
end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2] .. ' ' .. ARGV[3]) == 0 then
  local stored = redis.call('HGET', KEYS[2], ARGV[1])
  return string.match(stored, '^(%S+)')
end
-- A run handled after the operation was stopped: its outcome expires with the operation.
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[2], ttl)
end
redis.call('HINCRBY', KEYS[1], 'matched', 1)
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
return ARGV[2]
