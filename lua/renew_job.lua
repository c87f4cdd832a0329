--[[ renew_job: extend a job's lease (a worker's heartbeat).

KEYS[1]  jobs          hash  <p>:jobs
KEYS[2]  jobs due      zset  <p>:jobs:due
KEYS[3]  job owners    hash  <p>:jobs:owner
KEYS[4]  job leases    hash  <p>:jobs:lease

ARGV[1]  job id
ARGV[2]  lease token
ARGV[3]  now, ms since epoch
ARGV[4]  lease length, ms

Renews when the token holds the lease, or when nobody does (release_due cleared an expired
lease but no redelivered copy has begun yet: the original holder keeps the job).
Returns 1 renewed (deadline now + lease), 0 the job is gone or another token holds it.
]]

local jobs_key, due_key, owners_key, leases_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local job_id, token = ARGV[1], ARGV[2]

if redis.call('HEXISTS', jobs_key, job_id) == 0 then
  return 0
end
local owner = redis.call('HGET', owners_key, job_id)
if owner and owner ~= token then
  return 0
end
local deadline = tonumber(ARGV[3]) + tonumber(ARGV[4])
redis.call('HSET', owners_key, job_id, token)
redis.call('HSET', leases_key, job_id, deadline)
redis.call('ZADD', due_key, deadline, job_id)
return 1
