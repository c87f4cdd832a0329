--[[ begin_job: lease a job to a worker.

KEYS[1]  jobs          hash  <p>:jobs          job id -> Job JSON
KEYS[2]  jobs due      zset  <p>:jobs:due      job id by send-by / lease deadline
KEYS[3]  job owners    hash  <p>:jobs:owner    job id -> lease token
KEYS[4]  job leases    hash  <p>:jobs:lease    job id -> lease deadline, ms
KEYS[5]  job failures  hash  <p>:jobs:failures job id -> failed deliveries (see fail_job.lua)

ARGV[1]  job id
ARGV[2]  lease token (one per delivery)
ARGV[3]  now, ms since epoch
ARGV[4]  lease length, ms

The lease is taken when nobody holds it, the holder is this token, or the holder's lease has
expired (deadline <= now). Its deadline becomes the job's send-by time, so the tick resends
the job if the lease runs out without a renewal. Taking over an expired lease of another
delivery counts that delivery as failed (include/lost_delivery.lua).

Returns:
  {"ok", Job JSON, failures}   leased to ARGV[2] until now + lease; `failures` is how many
                               earlier deliveries raised or died without finishing the job
  {"gone"}           no such job (finished or dropped)
  {"busy"}           another token holds a live lease; nothing written
]]

-- @include "lost_delivery.lua"
-- @include "lease.lua"

local job, failures = lease_job(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5],
                                ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]))
if not job then
  return {failures}
end
return {'ok', job, failures}
