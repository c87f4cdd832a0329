--[[ mark_started: a run's first execution begins.

KEYS[1]  run meta  hash  <p>:{<run>}:run

ARGV[1]  now, ms since epoch

Status Queued -> Running; started_at is written once (kept if already set).
Returns 1 if the status changed, 0 otherwise (run missing, already running or ended).
]]

local meta_key = KEYS[1]
local status = redis.call('HGET', meta_key, 'status')
if not status then
  return 0
end
local started = redis.call('HGET', meta_key, 'started_at')
if not started or started == '' then
  redis.call('HSET', meta_key, 'started_at', ARGV[1])
end
if status == 'Queued' then
  redis.call('HSET', meta_key, 'status', 'Running')
  return 1
end
return 0
