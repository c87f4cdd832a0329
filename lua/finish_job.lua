--[[ finish_job: a job is done; delete it and leave a tombstone.

KEYS[1]  jobs          hash    <p>:jobs
KEYS[2]  jobs due      zset    <p>:jobs:due
KEYS[3]  job owners    hash    <p>:jobs:owner
KEYS[4]  job leases    hash    <p>:jobs:lease
KEYS[5]  jobs by run   zset    <p>:jobs:by-run      "<run id>|<job id>"
KEYS[6]  tombstone     string  <p>:job-done:<job id>
KEYS[7]  job failures  hash    <p>:jobs:failures       (see fail_job.lua)

ARGV[1]  job id
ARGV[2]  tombstone TTL, ms

The tombstone is written even when the job is already gone, so the id is never enqueued
again within the TTL. The lease token is not checked: whoever finishes, the work is done.
Returns 1 if the job was deleted, 0 if it was already gone.
]]

local jobs_key, due_key, owners_key, leases_key, by_run_key, tombstone_key, failures_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local job_id = ARGV[1]

redis.call('SET', tombstone_key, '1', 'PX', ARGV[2])
redis.call('HDEL', failures_key, job_id)
local job = redis.call('HGET', jobs_key, job_id)
if not job then
  return 0
end
local run_id = cjson.decode(job)['run_id']
if type(run_id) == 'string' and run_id ~= '' then
  redis.call('ZREM', by_run_key, run_id .. '|' .. job_id)
end
redis.call('HDEL', jobs_key, job_id)
redis.call('ZREM', due_key, job_id)
redis.call('HDEL', owners_key, job_id)
redis.call('HDEL', leases_key, job_id)
return 1
