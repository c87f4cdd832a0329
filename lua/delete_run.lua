--[[ delete_run: remove a run that ended before the retention cutoff, with every index entry.

The caller reads the run's function id and status first (they pick the index keys); if they
differ now, nothing is written and "changed" is returned so the caller reads again.

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
KEYS[11]  ended runs           zset    <p>:runs:ended            run id by ended_at

ARGV[1]   run id
ARGV[2]   function id as read ("" if the run was missing)
ARGV[3]   status as read ("" if the run was missing)
ARGV[4]   cutoff, ms since epoch: only a run that ended at or before it is deleted

Returns:
  "deleted"   the run and its index entries are gone
  "missing"   no such run; its entries in the all-runs and ended indexes were removed
  "kept"      the run has not ended, or ended after the cutoff; nothing written
  "changed"   its function id or status differ from the ones passed; nothing written
]]

-- @include "run_status.lua"

local meta_key, run_id = KEYS[1], ARGV[1]
local cutoff = tonumber(ARGV[4])

local meta = redis.call('HMGET', meta_key, 'function_id', 'status', 'ended_at')
if not meta[1] then
  redis.call('ZREM', KEYS[7], run_id)
  redis.call('ZREM', KEYS[11], run_id)
  return 'missing'
end
if meta[1] ~= ARGV[2] or meta[2] ~= ARGV[3] then
  return 'changed'
end
if not is_ended(meta[2]) or meta[3] == '' or tonumber(meta[3]) > cutoff then
  return 'kept'
end

redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
for i = 7, 11 do
  redis.call('ZREM', KEYS[i], run_id)
end
return 'deleted'
