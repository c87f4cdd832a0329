--[[ start_run: lease a Queued run's start job, admit it under the function's concurrency and
throttle limits, and mark the run started, in one step.

What begin_job.lua, slots_throttle.lua, slots_acquire.lua and mark_started.lua do one after
the other, for a start job its worker runs now: the job is leased to ARGV[2] as begin_job.lua
leases it; once leased, a function with limits (ARGV[6] and on given) has the run's start
admitted: a throttle gives it its start time (include/throttle.lua: a later one defers the
job, nothing else changes) and the job takes a slot in each concurrency constraint
(include/acquire.lua: a full one parks the job in its wait list, as slots_acquire.lua parks
it); then the run goes Queued -> Running as mark_started.lua moves it (started_at written
once, counted as started). A run that has ended (or is missing) takes no slot and no throttle
time; one Running already (an earlier delivery started it) takes its slot and stays as it is.

KEYS[1]   jobs                hash  <p>:jobs                    job id -> Job JSON
KEYS[2]   jobs due            zset  <p>:jobs:due                job id by send-by / lease end
KEYS[3]   job owners          hash  <p>:jobs:owner              job id -> lease token |
                                                                'parked' | 'woken' | 'deferred'
KEYS[4]   job leases          hash  <p>:jobs:lease              job id -> lease deadline, ms
KEYS[5]   job failures        hash  <p>:jobs:failures           (see fail_job.lua)
KEYS[6]   run meta            hash  <p>:{<run>}:run
KEYS[7]   queued runs         zset  <p>:runs:st:Queued
KEYS[8]   function's queued   zset  <p>:runs:st:Queued:fn:<function>
KEYS[9]   running runs        zset  <p>:runs:st:Running
KEYS[10]  function's running  zset  <p>:runs:st:Running:fn:<function>
KEYS[11]  started counter     hash  <p>:metric:runs_started_total   function -> count
With limits (ARGV[6] and on):
KEYS[12]  waiting             set   <p>:slots:waiting           constraints with a wait list
KEYS[13]  limits              hash  <p>:slots:limits            constraint -> limit (the tick's)
KEYS[14]  throttle            string <p>:throttle:<name>        GCRA arrival time (ms), PX  } only with
KEYS[15]  ticket              string <p>:{<run>}:throttle       the run's start (ms), PX    } a throttle
KEYS[b+2i-1] slots of i       zset  <p>:slots:<name>            executing job id -> lease expiry
KEYS[b+2i]   waiters of i     zset  <p>:slots-wait:<name>       parked job id -> score
             (b = 13, or 15 with a throttle; i = 1..n, n = 0..2 constraints)

ARGV[1]   job id (the run's start job)
ARGV[2]   lease token (one per delivery)
ARGV[3]   now, ms since epoch
ARGV[4]   lease length, ms
ARGV[5]   function id (the run's; the index keys above are its)
With limits:
ARGV[6]   score: run created_at (ms) - priority (s) * 1000; lower starts first
ARGV[7]   slot lease, ms (the holder renews it while it executes)
ARGV[8]   resend after, ms: a woken waiter's send-by is now + this
ARGV[9]   park recheck, ms: a parked job's send-by (safety net) is now + this
ARGV[10]  throttle emission interval, ms; 0: no throttle (KEYS[14], KEYS[15] absent)
ARGV[11]  throttle burst tolerance, ms        } as slots_throttle.lua's ARGV[4] to ARGV[7]
ARGV[12]  deferred send-by slack, ms          }
ARGV[13]  countdown horizon, ms               }
ARGV[14]  ticket slack, ms                    }
ARGV[13+2i] name of constraint i
ARGV[14+2i] limit of constraint i (>= 1)

A repeat after a lost reply answers as the first call: "ok" again (this token's lease, its
slots, its start); a job the first call parked is still parked (owner 'parked', live
lease): "wait" again, nothing written; one it deferred is deferred again to the same start
(the run's ticket). (Any other delivery of a parked job gets "wait" too: it stays parked.)

Returns:
  {"ok", Job JSON, failures, started, woken}
                     leased, as begin_job.lua, with a slot in every constraint (if any);
                     `started` is 1 if this call (or the same token's earlier call, repeated
                     after a lost reply) moved the run to Running, else 0 (run missing,
                     already started by another delivery, or ended); `woken`: Job JSON of
                     waiters woken on the way, for the caller to send (limits only)
  {"wait", woken}    the job is parked in a wait list (limits only)
  {"later", start}   the throttle starts the run at `start` (ms): the job is deferred to it
  {"gone"} / {"busy"}  as begin_job.lua; the run is left as it is
]]

-- @include "lost_delivery.lua"
-- @include "lease.lua"
-- @include "start.lua"
-- @include "run_status.lua"
-- @include "slots.lua"
-- @include "acquire.lua"
-- @include "throttle.lua"
-- @include "admit.lua"

local meta_key = KEYS[6]
local job_id, token, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local limited = #ARGV > 5
if limited and redis.call('HGET', KEYS[3], job_id) == 'parked'
    and tonumber(redis.call('HGET', KEYS[4], job_id) or '0') > now then
  return {'wait', {}}
end
local job, failures, owner = lease_job(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5],
                                       job_id, token, now, tonumber(ARGV[4]))
if not job then
  return {failures}
end

local status = redis.call('HGET', meta_key, 'status')
if status and redis.call('HGET', meta_key, 'function_id') ~= ARGV[5] then
  return redis.error_reply('start_run: function id does not match the run')
end

local woken = {}
if limited and status and not is_ended(status) then
  local code, start = admit_start(KEYS[1], KEYS[2], KEYS[3], KEYS[4], {unpack(KEYS, 12)},
                                  {unpack(ARGV, 6)}, job_id, now, woken)
  if code == 'later' then
    return {'later', start}
  elseif code == 'wait' then
    return {'wait', woken}
  end
end

local started = 0
if status == 'Queued' then
  start_queued(meta_key, KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11], ARGV[5], ARGV[3])
  started = 1
elseif status == 'Running' and owner == token
    and redis.call('HGET', meta_key, 'started_at') == ARGV[3] then
  started = 1  -- this token's call, repeated after a lost reply
end
return {'ok', job, failures, started, woken}
