--[[ connect_reply: store a worker's reply to a request; the first reply wins.

KEYS[1]  request   hash  <p>:connect:{<request id>}:req
KEYS[2]  replies   list  <p>:connect:{<request id>}:reply  wakes the executor waiting (BLPOP)

ARGV[1]  reply JSON (ConnectReply)
ARGV[2]  how long the answered request is kept, ms (a redelivered executor job finds it)

Returns:
  1   stored (also for a repeat of the same reply)
  0   another reply was stored first (a late reply after a retry): ignored
  -1  no such request (expired or never submitted): ignored
]]

local req_key, replies_key = KEYS[1], KEYS[2]
local reply, ttl = ARGV[1], ARGV[2]

local state = redis.call('HMGET', req_key, 'request', 'reply')
if not state[1] then
  return -1
end
if state[2] then
  if state[2] == reply then
    return 1
  end
  return 0
end
redis.call('HSET', req_key, 'reply', reply)
redis.call('PEXPIRE', req_key, ttl)
redis.call('RPUSH', replies_key, reply)
redis.call('PEXPIRE', replies_key, ttl)
return 1
