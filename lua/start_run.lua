--[[ start_run: lease a Queued run's start job and mark the run started, in one step.

What begin_job.lua and mark_started.lua do one after the other, for a start job its worker
runs now (a run created Queued by this task, run from its work list): the job is leased to
ARGV[2] as begin_job.lua leases it and, once leased, the run goes Queued -> Running as
mark_started.lua moves it (started_at written once, counted as started).

KEYS[1]   jobs                hash  <p>:jobs                    job id -> Job JSON
KEYS[2]   jobs due            zset  <p>:jobs:due                job id by send-by / lease end
KEYS[3]   job owners          hash  <p>:jobs:owner              job id -> lease token
KEYS[4]   job leases          hash  <p>:jobs:lease              job id -> lease deadline, ms
KEYS[5]   job failures        hash  <p>:jobs:failures           (see fail_job.lua)
KEYS[6]   run meta            hash  <p>:{<run>}:run
KEYS[7]   queued runs         zset  <p>:runs:st:Queued
KEYS[8]   function's queued   zset  <p>:runs:st:Queued:fn:<function>
KEYS[9]   running runs        zset  <p>:runs:st:Running
KEYS[10]  function's running  zset  <p>:runs:st:Running:fn:<function>
KEYS[11]  started counter     hash  <p>:metric:runs_started_total   function -> count

ARGV[1]   job id (the run's start job)
ARGV[2]   lease token (one per delivery)
ARGV[3]   now, ms since epoch
ARGV[4]   lease length, ms
ARGV[5]   function id (the run's; the index keys above are its)

Returns:
  {"ok", Job JSON, failures, started}   leased, as begin_job.lua; `started` is 1 if this
                                        call (or the same token's earlier call, repeated
                                        after a lost reply) moved the run to Running, else 0
                                        (run missing, already started by another delivery,
                                        or ended)
  {"gone"} / {"busy"}                   as begin_job.lua; the run is left as it is
]]

-- @include "lost_delivery.lua"

local jobs_key, due_key, owners_key, leases_key, failures_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local meta_key = KEYS[6]
local job_id, token, now = ARGV[1], ARGV[2], tonumber(ARGV[3])

local job = redis.call('HGET', jobs_key, job_id)
if not job then
  return {'gone'}
end
local owner = redis.call('HGET', owners_key, job_id)
local failures = tonumber(redis.call('HGET', failures_key, job_id) or '0')
if owner and owner ~= token then
  local deadline = tonumber(redis.call('HGET', leases_key, job_id) or '0')
  if deadline > now then
    return {'busy'}
  end
  failures = count_lost_delivery(failures_key, job_id, owner)
end
local deadline = now + tonumber(ARGV[4])
redis.call('HSET', owners_key, job_id, token)
redis.call('HSET', leases_key, job_id, deadline)
redis.call('ZADD', due_key, deadline, job_id)

local started = 0
local status = redis.call('HGET', meta_key, 'status')
if status and redis.call('HGET', meta_key, 'function_id') ~= ARGV[5] then
  return redis.error_reply('start_run: function id does not match the run')
end
if status == 'Queued' then
  local run_id = redis.call('HGET', meta_key, 'run_id')
  local created_at = redis.call('HGET', meta_key, 'created_at')
  local started_at = redis.call('HGET', meta_key, 'started_at')
  if not started_at or started_at == '' then
    redis.call('HSET', meta_key, 'started_at', ARGV[3])
  end
  redis.call('HSET', meta_key, 'status', 'Running')
  redis.call('ZREM', KEYS[7], run_id)
  redis.call('ZREM', KEYS[8], run_id)
  redis.call('ZADD', KEYS[9], created_at, run_id)
  redis.call('ZADD', KEYS[10], created_at, run_id)
  redis.call('HINCRBY', KEYS[11], ARGV[5], 1)
  started = 1
elseif status == 'Running' and owner == token
    and redis.call('HGET', meta_key, 'started_at') == ARGV[3] then
  started = 1  -- this token's call, repeated after a lost reply
end
return {'ok', job, failures, started}
