--[[ flow_singleton: decide, once per schedule, whether a singleton function may start a run.

KEYS[1]  lock      hash    <p>:flow:singleton:<fn id>:<key hash>            run_id, at (ms)
KEYS[2]  decision  hash    <p>:flow:singleton-decision:<fn id>:<schedule>   code, run_id, other
KEYS[3]  holder    hash    <p>:{<holder run>}:run   meta of the holder as read (when ARGV[3]
                                                    is "", any key: it is not read)
KEYS[4]  run ref   string  <p>:flow:singleton-run:<new run id>              the lock's key name

ARGV[1]  new run id (the run the caller will create)
ARGV[2]  mode: "skip" or "cancel"
ARGV[3]  holder run id as the caller read it from the lock, "" for none
ARGV[4]  now, ms since epoch
ARGV[5]  grace, ms: a holder without run state counts as live this long after it locked
         (its run is being created); after that it is a crashed leftover
ARGV[6]  decision TTL, ms
ARGV[7]  lock key name (stored in the run ref, for release)

A holder is live while its run exists and has not ended. The decision for a schedule (one
event, debounce or batch) is recorded, so a repeated schedule gets the same answer.

Returns {code, run id, other}:
  {"start", new run id, replaced}  the lock now names the new run; `replaced` is the live
                                   holder to cancel (mode cancel) or ""
  {"skip", "", holder}             mode skip and a live holder: do not start a run
  {code, run id, other}            the decision recorded earlier for this schedule
  {"changed", "", ""}              the lock's holder is not ARGV[3]; nothing written, read again
]]

-- @include "run_status.lua"

local lock_key, decision_key, holder_key, ref_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local run_id, mode, expected, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])

local decided = redis.call('HMGET', decision_key, 'code', 'run_id', 'other')
if decided[1] then
  return {decided[1], decided[2], decided[3]}
end

local holder = redis.call('HGET', lock_key, 'run_id') or ''
if holder ~= expected then
  return {'changed', '', ''}
end
local live = false
if holder ~= '' then
  local status = redis.call('HGET', holder_key, 'status')
  if status then
    live = not is_ended(status)
  else
    live = now - tonumber(redis.call('HGET', lock_key, 'at') or '0') < tonumber(ARGV[5])
  end
end

if live and mode == 'skip' then
  redis.call('HSET', decision_key, 'code', 'skip', 'run_id', '', 'other', holder)
  redis.call('PEXPIRE', decision_key, ARGV[6])
  return {'skip', '', holder}
end
local replaced = ''
if live then
  replaced = holder
end
redis.call('HSET', lock_key, 'run_id', run_id, 'at', ARGV[4])
redis.call('SET', ref_key, ARGV[7])
redis.call('HSET', decision_key, 'code', 'start', 'run_id', run_id, 'other', replaced)
redis.call('PEXPIRE', decision_key, ARGV[6])
return {'start', run_id, replaced}
