--[[ heartbeat: a worker or beat process says it is alive, and long-silent ones are forgotten.

KEYS[1]  processes        hash  <p>:procs         process id -> record JSON (app/liveness.py)
KEYS[2]  last heard       zset  <p>:procs:seen    process id, score last heartbeat (ms)

ARGV[1]  process id ("worker@<host>:<pid>", "beat@<host>:<pid>")
ARGV[2]  record JSON (carries its own time and heartbeat interval)
ARGV[3]  now, ms since epoch: this heartbeat's time
ARGV[4]  forget before, ms: processes last heard before this are removed

A heartbeat older than the one stored for the process (a re-sent call arriving late) changes
nothing, so a repeat never rolls a record back.
Returns the number of processes forgotten, or -1 when this heartbeat was older than the stored one.
]]

local procs_key, seen_key = KEYS[1], KEYS[2]
local id, record, now, forget_before = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])

local stored = redis.call('ZSCORE', seen_key, id)
if stored and tonumber(stored) > now then
  return -1
end
redis.call('HSET', procs_key, id, record)
redis.call('ZADD', seen_key, now, id)

local stale = redis.call('ZRANGEBYSCORE', seen_key, '-inf', '(' .. forget_before, 'LIMIT', 0, 100)
for _, old in ipairs(stale) do
  redis.call('HDEL', procs_key, old)
  redis.call('ZREM', seen_key, old)
end
return #stale
