--[[ mark_started: a run's first execution begins.

KEYS[1]  run meta              hash  <p>:{<run>}:run
KEYS[2]  queued runs           zset  <p>:runs:st:Queued                  run id by created_at
KEYS[3]  function's queued     zset  <p>:runs:st:Queued:fn:<function>
KEYS[4]  running runs          zset  <p>:runs:st:Running
KEYS[5]  function's running    zset  <p>:runs:st:Running:fn:<function>
KEYS[6]  started counter       hash  <p>:metric:runs_started_total       function -> count

ARGV[1]  now, ms since epoch
ARGV[2]  function id (as read from the run; the index keys above are its)

Status Queued -> Running (moving the run between the status indexes, counting the start);
started_at is written once (kept if already set).
Returns 1 if the status changed, 0 otherwise (run missing, already running or ended).
]]

-- @include "start.lua"

local meta_key = KEYS[1]
local status = redis.call('HGET', meta_key, 'status')
if not status then
  return 0
end
if redis.call('HGET', meta_key, 'function_id') ~= ARGV[2] then
  return redis.error_reply('mark_started: function id does not match the run')
end
if status == 'Queued' then
  start_queued(meta_key, KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], ARGV[2], ARGV[1])
  return 1
end
local started = redis.call('HGET', meta_key, 'started_at')
if not started or started == '' then
  redis.call('HSET', meta_key, 'started_at', ARGV[1])
end
return 0
