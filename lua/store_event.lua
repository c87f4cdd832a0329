--[[ store_event: store an incoming event once.

KEYS[1]  event         string  <p>:event:<internal id>     event record JSON
KEYS[2]  events        zset    <p>:events                  internal id by received_at
KEYS[3]  archive queue zset    <p>:history:events          internal id by received_at
KEYS[4]  dedupe        string  <p>:event-dedupe:<user id>  (only when the event has an id)

ARGV[1]  internal id
ARGV[2]  event record JSON: {"internal_id", "received_at", "event"}
ARGV[3]  received_at (now), ms since epoch
ARGV[4]  dedupe TTL, ms (used only with KEYS[4])

Returns {code, internal id}:
  {"stored", ARGV[1]}        stored
  {"duplicate", first id}    the user id was seen within the TTL (the first event's internal
                             id), or this internal id is already stored; nothing written
]]

-- @include "archive.lua"

local event_key, events_key, archive_key = KEYS[1], KEYS[2], KEYS[3]
local internal_id = ARGV[1]

if #KEYS == 4 then
  local first = redis.call('GET', KEYS[4])
  if first then
    return {'duplicate', first}
  end
end
if redis.call('EXISTS', event_key) == 1 then
  return {'duplicate', internal_id}
end
if #KEYS == 4 then
  redis.call('SET', KEYS[4], internal_id, 'PX', ARGV[4])
end
redis.call('SET', event_key, ARGV[2])
redis.call('ZADD', events_key, ARGV[3], internal_id)
queue_archive(archive_key, internal_id, ARGV[3])
return {'stored', internal_id}
