--[[ connect_requeue: put back a request a gateway popped but could not hand to a worker.

KEYS[1]  request   hash  <p>:connect:{<request id>}:req
KEYS[2]  queue     list  <p>:connect:queue:<app id>

ARGV[1]  request id
ARGV[2]  the pop's token (unique per pop): a repeat of the same requeue does nothing

Returns 1 put back at the head of the queue, 0 not (answered, gone, or already put back).
]]

local req_key, queue_key = KEYS[1], KEYS[2]

local state = redis.call('HMGET', req_key, 'request', 'reply', 'requeued')
if not state[1] or state[2] or state[3] == ARGV[2] then
  return 0
end
redis.call('HSET', req_key, 'requeued', ARGV[2])
redis.call('LPUSH', queue_key, ARGV[1])
return 1
