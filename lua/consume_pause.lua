--[[ consume_pause: resume a pause; exactly one consumer wins.

Writes the memo under the pause's step with save_step's first-write-wins rule, then deletes
the pause and all its index entries, in one step. Whoever finds the pause gone, or the step
already memoized (by anyone, even with identical bytes: consumers are distinct), loses.

KEYS[1]   pause          string  <p>:pause:<id>
KEYS[2]   pause expiry   zset    <p>:pauses:expiry
KEYS[3]   pause index    set     <p>:pidx:<event>:<path>:<value> or <p>:pscan:<event>
KEYS[4]   index paths    hash    <p>:pidx-paths:<event>
KEYS[5]   correlations   hash    <p>:pcorr
KEYS[6]   run pauses     set     <p>:{<run>}:pauses
KEYS[7]   run meta       hash    <p>:{<run>}:run
KEYS[8]   steps          hash    <p>:{<run>}:steps
KEYS[9]   stack          list    <p>:{<run>}:stack
KEYS[10]  pending        set     <p>:{<run>}:pending
KEYS[11]  jobs           hash    <p>:jobs               (resume job, see ARGV[8])
KEYS[12]  jobs due       zset    <p>:jobs:due
KEYS[13]  jobs by run    zset    <p>:jobs:by-run
KEYS[14]  tombstone      string  <p>:job-done:<resume job id>

ARGV[1]   pause id
ARGV[2]   pause JSON as the caller read it (the keys above were derived from it)
ARGV[3]   index mode: "idx", "scan" or ""
ARGV[4]   index path ("" unless mode idx)
ARGV[5]   correlation id, "" for none
ARGV[6]   hashed step id the pause writes to
ARGV[7]   memo, JSON text
ARGV[8]   resume job id, "" for none: created with the memo when the winner leaves no
          parallel step pending, so a consumer that dies right after winning loses nothing
ARGV[9]   resume job JSON
ARGV[10]  resume job send-by, ms since epoch
ARGV[11]  run id (for the jobs-by-run index)

Returns {code, pending count, resume job created (1/0)}:
  {"won", n, r}    memo written, pause deleted; n parallel steps remain pending
  {"lost", n}      the step already had a memo, or the run is ended or missing; the stale
                   pause is deleted; nothing memoized
  {"missing", 0}   no such pause (another consumer won, or it was deleted)
  {"changed", 0}   the stored pause differs from ARGV[2]; nothing written (read again, retry)
]]

-- @include "run_status.lua"
-- @include "memoize.lua"
-- @include "drop_pause.lua"
-- @include "enqueue.lua"

local meta_key, steps_key, stack_key, pending_key = KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local pause_id, step, memo = ARGV[1], ARGV[6], ARGV[7]

local current = redis.call('GET', KEYS[1])
if not current then
  return {'missing', 0}
end
if current ~= ARGV[2] then
  return {'changed', 0}
end

local keys = {pause = KEYS[1], expiry = KEYS[2], index = KEYS[3], paths = KEYS[4],
  correlations = KEYS[5], run_pauses = KEYS[6]}
drop_pause(keys, pause_id, ARGV[3], ARGV[4], ARGV[5])

local status = redis.call('HGET', meta_key, 'status')
if not status or is_ended(status) then
  return {'lost', 0}
end
if redis.call('HEXISTS', steps_key, step) == 1 then
  return {'lost', redis.call('SCARD', pending_key)}
end
local pending = memoize(meta_key, steps_key, stack_key, pending_key, step, memo)
local resumed = 0
if pending == 0 and ARGV[8] ~= '' then
  if enqueue(KEYS[11], KEYS[12], KEYS[13], KEYS[14], ARGV[8], ARGV[9], ARGV[10], ARGV[11]) == 1 then
    resumed = 1
  end
end
return {'won', pending, resumed}
