--[[ history_drop_event: remove an archived event from Redis once its hot window has passed.

An event whose processing job is still queued (its `ts` is in the future, or the workers are
behind) is kept: its drop moves to ARGV[4] and "waiting" is returned. The event's run links
(<p>:event-runs:<id>) stay: each run removes itself when it is dropped. The caller passes the
event's dedupe key only when Stepline gave the event its id (none was sent, or an engine event
named after its run): such an id is never sent again, and the key goes with the event.

KEYS[1]  event         string  <p>:event:<internal id>
KEYS[2]  all events    zset    <p>:events                  internal id by received_at
KEYS[3]  drop set      zset    <p>:history:drop-events     internal id by drop time
KEYS[4]  jobs          hash    <p>:jobs                    job id -> Job JSON
KEYS[5]  tombstone     string  <p>:job-done:<processing job id>   (deleted with the event)
KEYS[6]  dedupe        string  <p>:event-dedupe:<id>   (optional; deleted while it names
                               this event)

ARGV[1]  internal id
ARGV[2]  now, ms since epoch
ARGV[3]  the event's processing job id
ARGV[4]  when to try again if that job is still queued, ms since epoch

Returns:
  "dropped"   the event is gone from Redis (by this call or an earlier one)
  "kept"      not in the drop set or not due yet; nothing written
  "waiting"   its processing job is still queued; only its drop time moved
]]

local drops_key, internal_id = KEYS[3], ARGV[1]

local due = redis.call('ZSCORE', drops_key, internal_id)
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], internal_id)
  redis.call('ZREM', drops_key, internal_id)
  return 'dropped'
end
if not due or tonumber(due) > tonumber(ARGV[2]) then
  return 'kept'
end
if redis.call('HEXISTS', KEYS[4], ARGV[3]) == 1 then
  redis.call('ZADD', drops_key, ARGV[4], internal_id)
  return 'waiting'
end
redis.call('DEL', KEYS[1], KEYS[5])
if KEYS[6] and redis.call('GET', KEYS[6]) == internal_id then
  redis.call('DEL', KEYS[6])
end
redis.call('ZREM', KEYS[2], internal_id)
redis.call('ZREM', drops_key, internal_id)
return 'dropped'
