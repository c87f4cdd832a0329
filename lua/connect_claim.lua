--[[ connect_claim: a gateway takes a queued request for one of its worker connections.

KEYS[1]  request   hash  <p>:connect:{<request id>}:req

ARGV[1]  worker: "<instance id>/<connection id>" of the connection that will run it
ARGV[2]  now, ms since epoch
ARGV[3]  lease length, ms: the lease restarts at the claim, so time spent queued is not
         taken from the worker

Returns {request JSON, lease id} when claimed (a repeat by the same worker gets the same),
or an empty list when the request is gone, answered, or its lease ran out before any worker
took it (the executor gives up on it and retries the step).
]]

local req_key = KEYS[1]
local worker, now, lease_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])

local state = redis.call('HMGET', req_key, 'request', 'lease', 'lease_until', 'claimed_by',
  'reply')
if not state[1] or state[5] then
  return {}
end
if state[4] ~= worker and tonumber(state[3]) < now then
  return {}
end
if state[4] ~= worker then
  redis.call('HSET', req_key, 'claimed_by', worker, 'claimed_at', now,
    'lease_until', now + lease_ms)
end
return {state[1], state[2]}
