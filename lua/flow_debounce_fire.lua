--[[ flow_debounce_fire: a debounce timer fires: start the run, or re-arm for a later due time.

KEYS[1]  pointer    string  <p>:flow:debounce:<fn id>:<key hash>   (of the item's fn and key)
KEYS[2]  item       hash    <p>:flow:debounce-item:<debounce id>   (fields: flow_debounce.lua)
KEYS[3]  jobs       hash    <p>:jobs
KEYS[4]  jobs due   zset    <p>:jobs:due
KEYS[5]  by run     zset    <p>:jobs:by-run                        (untouched: no run yet)
KEYS[6]  tombstone  string  <p>:job-done:<next timer job id>

ARGV[1]  debounce id
ARGV[2]  now, ms since epoch
ARGV[3]  the item's timer generation as the caller read it
ARGV[4]  next timer job id (generation ARGV[3] + 1)
ARGV[5]  next timer job JSON
ARGV[6]  TTL of a fired item, ms (a redelivered timer still finds the event to schedule)

An event arriving while the timer fires is serialised by Redis: before this script it moved
`due` and the timer re-arms; after it, the pointer is gone and the event starts a new debounce.

Returns:
  {"fired", event id, event JSON}  start the run now with this (the last) event: the item is
                                   marked fired and the pointer dropped if it still names it.
                                   A fired item answers the same on every later call.
  {"rescheduled", due}             due is later than now: the next timer job is queued at due
  {"gone"}                         no such debounce (expired)
  {"changed"}                      the generation is not ARGV[3]; nothing written, read again
]]

-- @include "enqueue.lua"

local pointer_key, item_key = KEYS[1], KEYS[2]
local id, now = ARGV[1], tonumber(ARGV[2])

local state = redis.call('HGET', item_key, 'state')
if not state then
  return {'gone'}
end
if state == 'fired' then
  return {'fired', redis.call('HGET', item_key, 'event_id'), redis.call('HGET', item_key, 'event')}
end
local gen = tonumber(redis.call('HGET', item_key, 'gen'))
if gen ~= tonumber(ARGV[3]) then
  return {'changed'}
end
local due = redis.call('HGET', item_key, 'due')
if tonumber(due) > now then
  enqueue(KEYS[3], KEYS[4], KEYS[5], KEYS[6], ARGV[4], ARGV[5], due, '')
  redis.call('HSET', item_key, 'gen', gen + 1)
  return {'rescheduled', due}
end
if redis.call('GET', pointer_key) == id then
  redis.call('DEL', pointer_key)
end
redis.call('HSET', item_key, 'state', 'fired')
redis.call('PEXPIRE', item_key, ARGV[6])
return {'fired', redis.call('HGET', item_key, 'event_id'), redis.call('HGET', item_key, 'event')}
