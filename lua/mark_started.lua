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

local meta_key = KEYS[1]
local status = redis.call('HGET', meta_key, 'status')
if not status then
  return 0
end
local started = redis.call('HGET', meta_key, 'started_at')
if not started or started == '' then
  redis.call('HSET', meta_key, 'started_at', ARGV[1])
end
if redis.call('HGET', meta_key, 'function_id') ~= ARGV[2] then
  return redis.error_reply('mark_started: function id does not match the run')
end
if status == 'Queued' then
  local created_at = redis.call('HGET', meta_key, 'created_at')
  local run_id = redis.call('HGET', meta_key, 'run_id')
  redis.call('HSET', meta_key, 'status', 'Running')
  redis.call('ZREM', KEYS[2], run_id)
  redis.call('ZREM', KEYS[3], run_id)
  redis.call('ZADD', KEYS[4], created_at, run_id)
  redis.call('ZADD', KEYS[5], created_at, run_id)
  redis.call('HINCRBY', KEYS[6], ARGV[2], 1)
  return 1
end
return 0
