--[[ history_drop_run: remove an archived run from Redis once its hot window has passed, with
every index entry, its links from its events, and the keys kept only for its sake: the job
tombstones given and its event-derived idempotency key (once the run is archived and its
event processed, nothing can start that run again).

Only a run in the drop set (so committed to the history store) whose drop time has come is
removed. The caller reads the run's function id, status and event ids first (they pick the
keys); if the function or status differ now, nothing is written and "changed" is returned.

KEYS[1]   run meta             hash    <p>:{<run>}:run
KEYS[2]   run steps            hash    <p>:{<run>}:steps
KEYS[3]   run stack            list    <p>:{<run>}:stack
KEYS[4]   pending              set     <p>:{<run>}:pending
KEYS[5]   history              hash    <p>:{<run>}:history
KEYS[6]   run pauses           set     <p>:{<run>}:pauses
KEYS[7]   all runs             zset    <p>:runs
KEYS[8]   the function's runs  zset    <p>:runs:fn:<function>
KEYS[9]   status runs          zset    <p>:runs:st:<status>
KEYS[10]  function's status    zset    <p>:runs:st:<status>:fn:<function>
KEYS[11]  ended runs           zset    <p>:runs:ended
KEYS[12]  drop set             zset    <p>:history:drop-runs     run id by drop time
then, for event i (i = 1..E):
          event -> runs        set     <p>:event-runs:<event internal id>
then, for j = 1..T, keys kept only for the run, deleted with it:
          job tombstone        string  <p>:job-done:<job id>     (the run's jobs, now moot)
          run logs             list    <p>:{<run>}:logs          (archived with the run)
          run logs meta        hash    <p>:{<run>}:logs-meta
then, optionally:
          idempotency key      string  <p>:idem:<function>:<event internal id>   (deleted only
                                       while it still names this run)

ARGV[1]   run id
ARGV[2]   function id as read ("" if the run was missing)
ARGV[3]   status as read ("" if the run was missing)
ARGV[4]   now, ms since epoch
ARGV[5]   E, number of events
ARGV[6]   T, number of keys deleted with the run (tombstones, logs)

Returns:
  "dropped"   the run is gone from Redis (by this call or an earlier one)
  "kept"      not in the drop set, not due yet, or not ended; nothing written
  "changed"   its function id or status differ from the ones passed; nothing written
]]

-- @include "run_status.lua"

local meta_key, drops_key, run_id = KEYS[1], KEYS[12], ARGV[1]
local n_events, n_tombstones = tonumber(ARGV[5]), tonumber(ARGV[6])

local due = redis.call('ZSCORE', drops_key, run_id)
local meta = redis.call('HMGET', meta_key, 'function_id', 'status')
if not meta[1] then
  for i = 7, 12 do
    redis.call('ZREM', KEYS[i], run_id)
  end
  return 'dropped'
end
if not due or tonumber(due) > tonumber(ARGV[4]) or not is_ended(meta[2]) then
  return 'kept'
end
if meta[1] ~= ARGV[2] or meta[2] ~= ARGV[3] then
  return 'changed'
end

redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
for i = 7, 12 do
  redis.call('ZREM', KEYS[i], run_id)
end
for i = 13, 12 + n_events do
  redis.call('SREM', KEYS[i], run_id)
end
for i = 13 + n_events, 12 + n_events + n_tombstones do
  redis.call('DEL', KEYS[i])
end
local idem_at = 13 + n_events + n_tombstones
if KEYS[idem_at] and redis.call('GET', KEYS[idem_at]) == run_id then
  redis.call('DEL', KEYS[idem_at])
end
return 'dropped'
