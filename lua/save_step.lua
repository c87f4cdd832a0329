--[[ save_step: memoize steps' results, in order; the first write of each wins.

KEYS[1]  run meta  hash  <p>:{<run>}:run       status, die
KEYS[2]  steps     hash  <p>:{<run>}:steps     hashed step id -> memo JSON
KEYS[3]  stack     list  <p>:{<run>}:stack     hashed step ids in completion order
KEYS[4]  pending   set   <p>:{<run>}:pending   parallel steps not finished yet
KEYS[5]  history   hash  <p>:{<run>}:history   hashed step id -> history record
KEYS[6]  durations hash  <p>:metric:step_duration_seconds   (optional: only when ARGV[1] ~= "")

ARGV[1]     function id, the histogram's label ("" observes nothing)
ARGV[5i+2]  hashed step id        (i = 0, 1, ...: one or more steps, in the order they ran)
ARGV[5i+3]  memo, JSON text (stored verbatim)
ARGV[5i+4]  history info: JSON object of field -> JSON text; "" for none
ARGV[5i+5]  the step's duration bucket, its upper bound as Prometheus writes it ("0.005", ...,
            "+Inf"); "" observes nothing for this step
ARGV[5i+6]  the step's duration, seconds

The step's duration is observed in the histogram (fields "<function>|<bucket>", "|count",
"|sum") by the call that creates its memo, so each step execution counts exactly once.

On "created" the memo is stored, the step pushed on the stack and dropped from the pending
set (an emptied pending set clears `die`), the info merged into the step's history record and
the duration observed.
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
-- @include "observe_step.lua"

local meta_key, steps_key, stack_key, pending_key, history_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]

local status = redis.call('HGET', meta_key, 'status')
if not status or is_ended(status) then
  return {{'ended', '', 0}}
end

local label = ARGV[1]
local results = {}
for i = 2, #ARGV, 5 do
  local step, memo, info, bucket = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
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
    observe_step(KEYS[6], label, bucket, ARGV[i + 4])
    results[#results + 1] = {'created', '', pending}
  end
end
return results
