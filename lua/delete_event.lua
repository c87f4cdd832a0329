--[[ delete_event: remove an event received before the retention cutoff.

KEYS[1]  event              string  <p>:event:<internal id>
KEYS[2]  event -> runs      set     <p>:event-runs:<internal id>
KEYS[3]  all events         zset    <p>:events              internal id by received_at

ARGV[1]  event internal id
ARGV[2]  cutoff, ms since epoch: only an event received at or before it is deleted

Returns 1 if deleted, 0 if kept (received after the cutoff), -1 if it was not in the index
(deleted already; nothing written).
]]

local score = redis.call('ZSCORE', KEYS[3], ARGV[1])
if not score then
  return -1
end
if tonumber(score) > tonumber(ARGV[2]) then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
