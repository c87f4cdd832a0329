--[[ fail_job: the handler of a leased job raised (a bug or an outage, not a user error).

Counts the failure, lets go of the lease and schedules the job again after a backoff that
doubles with each failure (base * 2^(failures-1), capped), so a job that keeps failing
backs off instead of being resent every lease period forever.

KEYS[1]  jobs          hash    <p>:jobs
KEYS[2]  jobs due      zset    <p>:jobs:due
KEYS[3]  job owners    hash    <p>:jobs:owner
KEYS[4]  job leases    hash    <p>:jobs:lease
KEYS[5]  job failures  hash    <p>:jobs:failures       job id -> count

ARGV[1]  job id
ARGV[2]  lease token of the caller
ARGV[3]  now, ms since epoch
ARGV[4]  backoff base, ms
ARGV[5]  backoff cap, ms

Returns the job's failure count after this one, 0 if the job is gone, or -1 if another token
holds the lease (nothing written).
]]

local jobs_key, due_key, owners_key, leases_key, failures_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local job_id = ARGV[1]

if redis.call('HEXISTS', jobs_key, job_id) == 0 then
  return 0
end
local owner = redis.call('HGET', owners_key, job_id)
if owner and owner ~= ARGV[2] then
  return -1
end
local failures = redis.call('HINCRBY', failures_key, job_id, 1)
redis.call('HDEL', owners_key, job_id)
redis.call('HDEL', leases_key, job_id)
local delay = math.min(tonumber(ARGV[5]), tonumber(ARGV[4]) * 2 ^ (failures - 1))
redis.call('ZADD', due_key, tonumber(ARGV[3]) + math.floor(delay), job_id)
return failures
