--[[ flow_batch_append: an event joins its function's open batch (opening one if there is none).

KEYS[1]  pointer     string  <p>:flow:batch:<fn id>:<key hash>     open batch id (PX)
KEYS[2]  seen        string  <p>:flow:batch-seen:<fn id>:<event>   batch the event joined (PX)
KEYS[3]  events      list    <p>:flow:batch-events:<batch id>      {"id", "event"} JSON items
KEYS[4]  meta        hash    <p>:flow:batch-meta:<batch id>        fn, key, status, created_at,
                                                                   bytes
KEYS[5]  jobs        hash    <p>:jobs
KEYS[6]  jobs due    zset    <p>:jobs:due
KEYS[7]  by run      zset    <p>:jobs:by-run                       (untouched: no run yet)
KEYS[8]  tombstone   string  <p>:job-done:<timer job id>
KEYS[9]  tombstone   string  <p>:job-done:<full job id>

ARGV[1]   batch id: the pointer's value as read, or a fresh id when ARGV[2] is "1"
ARGV[2]   "1" if the pointer was absent when read (open a batch), "0" if it held ARGV[1]
ARGV[3]   event internal id
ARGV[4]   item JSON: {"id": internal id, "event": wire event}
ARGV[5]   max size: the batch closes when it holds this many events
ARGV[6]   max bytes: ... or when its items hold this many bytes
ARGV[7]   now, ms since epoch
ARGV[8]   timeout, ms: the batch closes at the latest this long after its first event
ARGV[9]   function id
ARGV[10]  key hash
ARGV[11]  timer job id; ARGV[12] its JSON (queued with the first event, send-by now + timeout)
ARGV[13]  full job id; ARGV[14] its JSON (queued when the batch fills)
ARGV[15]  full job send-by, ms (the caller sends it at once; the tick resends it then)
ARGV[16]  seen TTL, ms
ARGV[17]  TTL of the batch's pointer, events and meta, ms (beyond the timeout)

Returns {code, batch id, size}:
  {"appended", id, n}    the event is the batch's n-th
  {"full", id, n}        ... and the batch is now closed (status "started", pointer dropped)
                         and its full job queued: the caller sends it
  {"duplicate", id, 0}   the event already joined batch id; nothing written
  {"changed", "", 0}     the pointer is not what the caller read; nothing written, read again
]]

-- @include "enqueue.lua"

local pointer_key, seen_key, events_key, meta_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, expect_new = ARGV[1], ARGV[2] == '1'
local now, timeout = tonumber(ARGV[7]), tonumber(ARGV[8])
local ttl = ARGV[17]

local seen = redis.call('GET', seen_key)
if seen then
  return {'duplicate', seen, 0}
end
local current = redis.call('GET', pointer_key)
if expect_new then
  if current then
    return {'changed', '', 0}
  end
  redis.call('SET', pointer_key, id, 'PX', ttl)
  redis.call('HSET', meta_key, 'fn', ARGV[9], 'key', ARGV[10], 'status', 'pending',
    'created_at', ARGV[7], 'bytes', 0)
  redis.call('PEXPIRE', meta_key, ttl)
elseif current ~= id then
  return {'changed', '', 0}
end

local n = redis.call('RPUSH', events_key, ARGV[4])
redis.call('PEXPIRE', events_key, ttl)
redis.call('SET', seen_key, id, 'PX', ARGV[16])
local bytes = redis.call('HINCRBY', meta_key, 'bytes', string.len(ARGV[4]))
if n == 1 then
  enqueue(KEYS[5], KEYS[6], KEYS[7], KEYS[8], ARGV[11], ARGV[12],
    string.format('%.0f', now + timeout), '')
end
if n >= tonumber(ARGV[5]) or bytes >= tonumber(ARGV[6]) then
  redis.call('HSET', meta_key, 'status', 'started')
  redis.call('DEL', pointer_key)
  enqueue(KEYS[5], KEYS[6], KEYS[7], KEYS[9], ARGV[13], ARGV[14], ARGV[15], '')
  return {'full', id, n}
end
return {'appended', id, n}
