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
-- @include "lease.lua"
-- @include "start.lua"

local meta_key = KEYS[6]
local token = ARGV[2]
local job, failures, owner = lease_job(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5],
                                       ARGV[1], token, tonumber(ARGV[3]), tonumber(ARGV[4]))
if not job then
  return {failures}
end

local started = 0
local status = redis.call('HGET', meta_key, 'status')
if status and redis.call('HGET', meta_key, 'function_id') ~= ARGV[5] then
  return redis.error_reply('start_run: function id does not match the run')
end
if status == 'Queued' then
  start_queued(meta_key, KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11], ARGV[5], ARGV[3])
  started = 1
elseif status == 'Running' and owner == token
    and redis.call('HGET', meta_key, 'started_at') == ARGV[3] then
  started = 1  -- this token's call, repeated after a lost reply
end
return {'ok', job, failures, started}
