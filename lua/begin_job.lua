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

local jobs_key, due_key, owners_key, leases_key, failures_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
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
return {'ok', job, failures}
