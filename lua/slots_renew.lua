--[[ slots_renew: extend the slot leases of a job that is still executing (a heartbeat).

KEYS[1]..KEYS[n]  slots  zset  <p>:slots:<name>, one per constraint: executing job id ->
                                lease expiry (ms)

ARGV[1]     job id
ARGV[2]     now, ms since epoch
ARGV[3]     slot lease, ms

Only a slot the job still holds is renewed: a lease that already ran out (and was pruned,
maybe handed to a waiter) is never taken back.
Returns the number of slots renewed (n when all are still held).
]]

local job_id, deadline = ARGV[1], tonumber(ARGV[2]) + tonumber(ARGV[3])
local renewed = 0
for _, slots_key in ipairs(KEYS) do
  if redis.call('ZSCORE', slots_key, job_id) then
    redis.call('ZADD', slots_key, deadline, job_id)
    renewed = renewed + 1
  end
end
return renewed
