--[[ connect_extend: a worker renews its lease on a request it is running.

KEYS[1]  request   hash  <p>:connect:{<request id>}:req

ARGV[1]  the lease id the worker holds
ARGV[2]  the new lease id (rotated on every renewal, as Inngest does)
ARGV[3]  now, ms since epoch
ARGV[4]  lease length, ms

Returns the new lease id (ARGV[2]) when renewed, also for a repeat of the same renewal; false
when the lease is lost: the request is gone or answered, the lease ran out (the executor has
given up on it), or another submission holds it. The worker then stops renewing.
]]

local req_key = KEYS[1]
local held, renewed, now, lease_ms = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])

local state = redis.call('HMGET', req_key, 'lease', 'lease_until', 'reply')
if not state[1] or state[3] then
  return false
end
if state[1] == renewed then
  return renewed
end
if state[1] ~= held or tonumber(state[2]) < now then
  return false
end
redis.call('HSET', req_key, 'lease', renewed, 'lease_until', now + lease_ms)
return renewed
