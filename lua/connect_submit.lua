--[[ connect_submit: hand a call to the connected workers of an app, under a lease.

KEYS[1]  request   hash  <p>:connect:{<request id>}:req   app, fn, step, run, payload, lease,
                                                           lease_until, claimed_by, reply
KEYS[2]  queue     list  <p>:connect:queue:<app id>       request ids no gateway took yet

ARGV[1]  request id
ARGV[2]  request JSON (ConnectRequest: app_id, function_slug, step_id, run_id, payload)
ARGV[3]  app id
ARGV[4]  lease id for this submission (new per call; a repeat of the call sends the same)
ARGV[5]  now, ms since epoch
ARGV[6]  lease length, ms: the request must be claimed and renewed by then
ARGV[7]  time to live of the request and the queue, ms

A request id is deterministic per call (run, steps done, target, attempt): a redelivered
executor job submits the same id and gets the first submission's fate instead of running the
step twice.

Returns {code, value}:
  {"replied", reply JSON}  a worker already answered this request: use that reply
  {"sent", lease id}       queued for the app's workers (also: a repeat of our own call)
  {"busy", lease id}       another submission's lease is live: wait for its reply
A request whose lease ran out unanswered (its worker died) is queued again with ARGV[4].
]]

local req_key, queue_key = KEYS[1], KEYS[2]
local lease_id, now, lease_ms, ttl = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]

local state = redis.call('HMGET', req_key, 'reply', 'lease', 'lease_until')
if state[1] then
  return {'replied', state[1]}
end
if state[2] == lease_id then
  return {'sent', lease_id}
end
if state[2] and tonumber(state[3]) >= now then
  return {'busy', state[2]}
end
redis.call('HSET', req_key, 'request', ARGV[2], 'app', ARGV[3], 'lease', lease_id,
  'lease_until', now + lease_ms, 'claimed_by', '', 'submitted_at', now)
redis.call('PEXPIRE', req_key, ttl)
redis.call('RPUSH', queue_key, ARGV[1])
redis.call('PEXPIRE', queue_key, ttl)
return {'sent', lease_id}
