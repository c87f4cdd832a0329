--[[ slots_throttle: give a run its start time under a GCRA throttle; defer its start job.

KEYS[1]  throttle     string  <p>:throttle:<name>       theoretical arrival time (ms), PX
KEYS[2]  ticket       string  <p>:{<run>}:throttle      the run's start time (ms), PX
KEYS[3]  jobs         hash    <p>:jobs                  job id -> Job JSON
KEYS[4]  jobs due     zset    <p>:jobs:due              job id by send-by (ms)
KEYS[5]  job owners   hash    <p>:jobs:owner            job id -> lease token | 'deferred'
KEYS[6]  job leases   hash    <p>:jobs:lease            job id -> lease deadline (ms)

ARGV[1]  start job id
ARGV[2]  now, ms since epoch
ARGV[3]  emission interval, ms (period / limit)
ARGV[4]  burst tolerance, ms ((limit + burst - 1) * interval: limit + burst starts may go
         back to back when the throttle is idle)
ARGV[5]  send-by slack, ms: a deferred job whose start is within ARGV[6] is sent by the
         caller with a countdown and gets send-by start + this; later ones get send-by
         start (the tick sends them)
ARGV[6]  countdown horizon, ms
ARGV[7]  ticket slack, ms: the ticket lives until its start time + this

GCRA with reservation (include/throttle.lua; start_run.lua does the same for a start job it
leases): each run is given the earliest start the rate allows, once (its ticket), so a start
job delivered again (or early) gets the same start time and consumes nothing. A job whose
start is later is deferred in place: owner 'deferred', lease 0 (the delivery at its start
time may take it at once), send-by as above.

Returns {start time (ms), code}:
  code "now"     start the run now (start time <= now)
  code "later"   the job is deferred until the start time
  code "gone"    the start is later but the job no longer exists
]]

-- @include "throttle.lua"

local job_id, now = ARGV[1], tonumber(ARGV[2])
local start = throttle_start(KEYS[1], KEYS[2], now, tonumber(ARGV[3]), tonumber(ARGV[4]),
                             tonumber(ARGV[7]))
if start <= now then
  return {start, 'now'}
end
if redis.call('HEXISTS', KEYS[3], job_id) == 0 then
  return {start, 'gone'}
end
throttle_defer(KEYS[4], KEYS[5], KEYS[6], job_id, start, now, tonumber(ARGV[5]), tonumber(ARGV[6]))
return {start, 'later'}
