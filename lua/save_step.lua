--[[ save_step: memoize steps' results, in order; the first write of each wins.

KEYS[1]  run meta  hash  <p>:{<run>}:run       status, die
KEYS[2]  steps     hash  <p>:{<run>}:steps     hashed step id -> memo JSON
KEYS[3]  stack     list  <p>:{<run>}:stack     hashed step ids in completion order
KEYS[4]  pending   set   <p>:{<run>}:pending   parallel steps not finished yet
KEYS[5]  history   hash  <p>:{<run>}:history   hashed step id -> history record

ARGV[3i+1]  hashed step id        (i = 0, 1, ...: one or more steps, in the order they ran)
ARGV[3i+2]  memo, JSON text (stored verbatim)
ARGV[3i+3]  history info: JSON object of field -> JSON text; "" for none

On "created" the memo is stored, the step pushed on the stack and dropped from the pending
set (an emptied pending set clears `die`), and the info merged into the step's history record.
The steps are saved in order and the script stops after the first one answered "different"
or "ended": what followed it was computed from a memo that lost. Repeating a call (a lost
reply) answers "identical" for each step it had created and writes nothing.

Returns one {code, stored memo, pending count} per step handled (all of them unless it
stopped early):
  {"created", "", n}          this call wrote the memo; n parallel steps remain pending
  {"identical", memo, n}      the same bytes were already there; nothing written
  {"different", memo, n}      another memo was already there (returned); nothing written
  {"ended", "", 0}            the run is Completed/Failed/Cancelled or missing; nothing written
]]

-- @include "run_status.lua"
-- @include "memoize.lua"
-- @include "merge_history.lua"

local meta_key, steps_key, stack_key, pending_key, history_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]

local status = redis.call('HGET', meta_key, 'status')
if not status or is_ended(status) then
  return {{'ended', '', 0}}
end

local results = {}
for i = 1, #ARGV, 3 do
  local step, memo, info = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local existing = redis.call('HGET', steps_key, step)
  if existing then
    local code = 'different'
    if existing == memo then
      code = 'identical'
    end
    results[#results + 1] = {code, existing, redis.call('SCARD', pending_key)}
    if code == 'different' then
      return results
    end
  else
    local pending = memoize(meta_key, steps_key, stack_key, pending_key, step, memo)
    merge_history(history_key, step, info)
    results[#results + 1] = {'created', '', pending}
  end
end
return results
