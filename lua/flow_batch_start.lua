--[[ flow_batch_start: close a batch (timer or full job) and hand out its events.

KEYS[1]  pointer  string  <p>:flow:batch:<fn id>:<key hash>   (of the batch's fn and key)
KEYS[2]  events   list    <p>:flow:batch-events:<batch id>
KEYS[3]  meta     hash    <p>:flow:batch-meta:<batch id>

ARGV[1]  batch id

The pointer is dropped only if it still names this batch (a full batch dropped it already and
a new batch may be open). Closing twice is harmless: both callers get the same events and
schedule the run under the same idempotency key; the keys go when the caller drops the batch.

Returns:
  {"start", item JSON, ...}   the batch is closed (status "started"); its items in order
  {"gone"}                    no such batch (scheduled and dropped, or expired)
]]

local pointer_key, events_key, meta_key = KEYS[1], KEYS[2], KEYS[3]

if redis.call('EXISTS', meta_key) == 0 then
  return {'gone'}
end
if redis.call('HGET', meta_key, 'status') ~= 'started' then
  if redis.call('GET', pointer_key) == ARGV[1] then
    redis.call('DEL', pointer_key)
  end
  redis.call('HSET', meta_key, 'status', 'started')
end
local out = {'start'}
for _, item in ipairs(redis.call('LRANGE', events_key, 0, -1)) do
  out[#out + 1] = item
end
return out
