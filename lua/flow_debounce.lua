--[[ flow_debounce: an event joins its function's debounce (creating it if there is none).

KEYS[1]  pointer    string  <p>:flow:debounce:<fn id>:<key hash>   current debounce id (PX)
KEYS[2]  item       hash    <p>:flow:debounce-item:<debounce id>   see below (PX)
KEYS[3]  jobs       hash    <p>:jobs                               job id -> Job JSON
KEYS[4]  jobs due   zset    <p>:jobs:due                           job id by send-by time
KEYS[5]  by run     zset    <p>:jobs:by-run                        (untouched: no run yet)
KEYS[6]  tombstone  string  <p>:job-done:<timer job id>

ARGV[1]   debounce id: the pointer's value as read, or a fresh id when ARGV[2] is "1"
ARGV[2]   "1" if the pointer was absent when read (create a debounce), "0" if it held ARGV[1]
ARGV[3]   event internal id
ARGV[4]   event JSON (wire form)
ARGV[5]   event ts, ms since epoch
ARGV[6]   now, ms since epoch
ARGV[7]   period, ms
ARGV[8]   timeout, ms: the run starts at the latest this long after the first event (0: none)
ARGV[9]   function id
ARGV[10]  key hash
ARGV[11]  timer job id (generation 0)
ARGV[12]  timer job JSON
ARGV[13]  TTL of pointer and item, ms (longer than any due time)

Item fields: fn, key, event_id, event, ts, due (ms), timeout_at (ms, 0: none), gen (timer
generation), state ("pending" | "fired").

Returns {code, debounce id, due}:
  {"created", id, due}   new debounce holding this event; its timer job is queued (send-by due)
  {"updated", id, due}   this event replaced the stored one; due = now + period, never beyond
                         timeout_at (the queued timer re-arms itself, see flow_debounce_fire)
  {"ignored", id, due}   the stored event has a later ts (out of order); nothing written
  {"changed", "", 0}     the pointer is not what the caller read; nothing written, read again
]]

-- @include "enqueue.lua"

local pointer_key, item_key = KEYS[1], KEYS[2]
local id, expect_new = ARGV[1], ARGV[2] == '1'
local now, period, timeout = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local ttl = ARGV[13]

local current = redis.call('GET', pointer_key)
if expect_new then
  if current then
    return {'changed', '', 0}
  end
  local due = now + period
  local timeout_at = 0
  if timeout > 0 then
    timeout_at = now + timeout
    due = math.min(due, timeout_at)
  end
  redis.call('SET', pointer_key, id, 'PX', ttl)
  redis.call('HSET', item_key, 'fn', ARGV[9], 'key', ARGV[10], 'event_id', ARGV[3],
    'event', ARGV[4], 'ts', ARGV[5], 'due', string.format('%.0f', due),
    'timeout_at', string.format('%.0f', timeout_at), 'gen', 0, 'state', 'pending')
  redis.call('PEXPIRE', item_key, ttl)
  enqueue(KEYS[3], KEYS[4], KEYS[5], KEYS[6], ARGV[11], ARGV[12], string.format('%.0f', due), '')
  return {'created', id, string.format('%.0f', due)}
end

if current ~= id then
  return {'changed', '', 0}
end
if redis.call('HGET', item_key, 'state') ~= 'pending' then
  -- The item expired under a live pointer (or fired without rotating it): start afresh.
  redis.call('DEL', pointer_key)
  return {'changed', '', 0}
end
if tonumber(redis.call('HGET', item_key, 'ts')) > tonumber(ARGV[5]) then
  return {'ignored', id, redis.call('HGET', item_key, 'due')}
end
local due = now + period
local timeout_at = tonumber(redis.call('HGET', item_key, 'timeout_at'))
if timeout_at > 0 then
  due = math.min(due, timeout_at)
end
redis.call('HSET', item_key, 'event_id', ARGV[3], 'event', ARGV[4], 'ts', ARGV[5],
  'due', string.format('%.0f', due))
redis.call('PEXPIRE', pointer_key, ttl)
redis.call('PEXPIRE', item_key, ttl)
return {'updated', id, string.format('%.0f', due)}
