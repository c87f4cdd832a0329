--[[ create_run: create a run (status Queued) once, optionally with memoized steps; or
create it started, its start job leased to the caller, when the caller runs it next; or,
for a function with concurrency or throttle limits, create it and admit its start in the
same call.

A rerun passes the original run id; a replay also passes the steps it keeps (memos, stack
order and history records), so the new run starts as if those steps had already run.

With a lease token (ARGV[13]) the run is created Running (started_at = created_at, counted
as queued and as started, as mark_started.lua would) and its start job is written leased to
that token until ARGV[14] (its send-by is that deadline: if the caller dies, the tick
resends the job when the lease runs out, and the delivery that takes it over finds the run
started). One script call so replaces create_run + begin_job + mark_started.

With a token and an admission (ARGV[16+n] and on: a function with limits), the start job
is first admitted as start_run.lua admits it (include/admit.lua): a throttle that starts the
run later defers the job to that time (run Queued, "later"); a full concurrency constraint
parks the job in its wait list (run Queued, "wait"); admitted, the job holds a slot in each
constraint and the run is created started as above. One call so replaces create_run +
start_run for a limited run too.

KEYS[1]        run meta              hash    <p>:{<run>}:run
KEYS[2]        run steps             hash    <p>:{<run>}:steps         (written only by a replay)
KEYS[3]        run stack             list    <p>:{<run>}:stack         (written only by a replay)
KEYS[4]        run history           hash    <p>:{<run>}:history       (written only by a replay)
KEYS[5]        all runs              zset    <p>:runs                  run id by created_at
KEYS[6]        the function's runs   zset    <p>:runs:fn:<function>    run id by created_at
KEYS[7]        queued runs           zset    <p>:runs:st:Queued        run id by created_at
KEYS[8]        function's queued     zset    <p>:runs:st:Queued:fn:<function>
KEYS[9]        queued counter        hash    <p>:metric:runs_queued_total   function -> count
KEYS[10]       jobs                  hash    <p>:jobs                   (see enqueue_job.lua)
KEYS[11]       jobs due              zset    <p>:jobs:due
KEYS[12]       jobs by run           zset    <p>:jobs:by-run
KEYS[13]       start job tombstone   string  <p>:job-done:<start job id>
KEYS[14]       job owners            hash    <p>:jobs:owner             job id -> lease token |
                                                                        'parked' | 'deferred'
KEYS[15]       job leases            hash    <p>:jobs:lease             job id -> deadline, ms
KEYS[16]       running runs          zset    <p>:runs:st:Running        (used only when leased)
KEYS[17]       function's running    zset    <p>:runs:st:Running:fn:<function>
KEYS[18]       started counter       hash    <p>:metric:runs_started_total   function -> count
KEYS[19..18+n] event -> runs links   set     <p>:event-runs:<event internal id>, one per event
KEYS[19+n]     idempotency key       string  <p>:idem:<function>:<key>  (only when keyed)
then, with an admission, its keys as start_run.lua's KEYS[12] and on:
               waiting set, limits hash, [throttle, ticket: only with a throttle], then the
               slots and waiters zsets of each constraint

ARGV[1]        run id
ARGV[2]        function id
ARGV[3]        created_at, ms since epoch (the admission's now)
ARGV[4]        events, JSON list (wire form)
ARGV[5]        event internal ids, JSON list
ARGV[6]        correlation id, "" for none
ARGV[7]        idempotency TTL, ms (used only when keyed)
ARGV[8]        original run id (rerun / replay), "" for none
ARGV[9]        memoized steps, "" for none, else JSON
               {"stack": [step id...], "steps": {step id: memo JSON text},
                "history": {step id: history record JSON text}}
ARGV[10]       start job id, "" for none
ARGV[11]       start job JSON
ARGV[12]       start job send-by, ms since epoch
ARGV[13]       lease token, "" for none (create Queued); needs a start job
ARGV[14]       lease deadline, ms since epoch (used only with a token)
ARGV[15]       n, the number of events
ARGV[16..15+n] event internal ids, one per KEYS[19..18+n]
ARGV[16+n..]   the admission (only with a token; none: a function without limits), as
               start_run.lua's ARGV[6] and on: score, slot lease ms, resend ms, park recheck
               ms, throttle interval ms (0: none), tolerance ms, slack ms, horizon ms, ticket
               slack ms, then name and limit of each constraint

The run and its start job are written together: no crash can leave a Queued run that no job
will ever start. The job is written only when the run is created.

Returns {code, run id[, woken | start]}:
  {"started", run id, woken}
                         created Running, its start job leased to ARGV[13] (with an
                         admission: holding a slot in each constraint); `woken` (admission
                         only, else absent): Job JSON of waiters woken on the way, for the
                         caller to send. A repeat of that call (a lost reply) answers the same
                         (woken empty) while the job is leased to that token
  {"wait", run id, woken}
                         (admission only) created Queued, its start job parked in the wait
                         list of a full constraint; a repeat answers "wait" while it is parked
  {"later", run id, start}
                         (admission only) created Queued, its start job deferred to `start`
                         (ms) by the throttle; a repeat answers the same while it is deferred
  {"created", run id}    the run was created Queued (and its start job queued)
  {"exists", run id}     the idempotency key is taken (its run id) or this run id exists
]]

-- @include "enqueue.lua"
-- @include "slots.lua"
-- @include "acquire.lua"
-- @include "throttle.lua"
-- @include "admit.lua"

local meta_key, steps_key, stack_key, history_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local run_id, function_id, created_at = ARGV[1], ARGV[2], ARGV[3]
local job_id, token = ARGV[10], ARGV[13]
local n = tonumber(ARGV[15])

-- The admission's keys and arguments (after the events' and the idempotency key), if any.
local admit_keys, admit_args = nil, nil
if token ~= '' and #ARGV > 15 + n then
  admit_args = {unpack(ARGV, 16 + n)}
  local count = 2 + (#admit_args - 9)
  if tonumber(admit_args[5]) > 0 then
    count = count + 2
  end
  admit_keys = {unpack(KEYS, #KEYS - count + 1)}
end
local keyed = #KEYS - (admit_keys and #admit_keys or 0) == 19 + n

-- The answer to a call already made: what that call did for this token's start.
local function existing(found)
  if token ~= '' and found == run_id then
    local owner = redis.call('HGET', KEYS[14], job_id)
    if owner == token then
      return {'started', run_id, {}}
    elseif admit_keys and owner == 'parked' then
      return {'wait', run_id, {}}
    elseif admit_keys and owner == 'deferred' and tonumber(admit_args[5]) > 0 then
      local start = redis.call('GET', admit_keys[4])
      if start then
        return {'later', run_id, tonumber(start)}
      end
    end
  end
  return {'exists', found}
end

if keyed then
  local idem_key = KEYS[19 + n]
  local taken = redis.call('GET', idem_key)
  if taken then
    return existing(taken)
  end
  redis.call('SET', idem_key, run_id, 'PX', ARGV[7])
end

if redis.call('EXISTS', meta_key) == 1 then
  return existing(run_id)
end

local created = 0
if job_id ~= '' then
  created = enqueue(KEYS[10], KEYS[11], KEYS[12], KEYS[13], job_id, ARGV[11], ARGV[12], run_id)
end
local started = token ~= '' and created == 1
local woken, admitted, start = {}, 'ok', nil
if started and admit_keys then
  admitted, start = admit_start(KEYS[10], KEYS[11], KEYS[14], KEYS[15], admit_keys, admit_args,
                                job_id, tonumber(created_at), woken)
  started = admitted == 'ok'  -- parked or deferred: the run waits Queued
end

redis.call('HSET', meta_key,
  'run_id', run_id,
  'function_id', function_id,
  'status', started and 'Running' or 'Queued',
  'events', ARGV[4],
  'event_ids', ARGV[5],
  'created_at', created_at,
  'started_at', started and created_at or '',
  'ended_at', '',
  'output', 'null',
  'error', 'null',
  'die', '0',
  'correlation_id', ARGV[6])
if ARGV[8] ~= '' then
  redis.call('HSET', meta_key, 'original_run_id', ARGV[8])
end
if ARGV[9] ~= '' then
  local memo = cjson.decode(ARGV[9])
  for _, step in ipairs(memo['stack']) do
    redis.call('HSET', steps_key, step, memo['steps'][step])
    redis.call('RPUSH', stack_key, step)
    local record = memo['history'][step]
    if record then
      redis.call('HSET', history_key, step, record)
    end
  end
end
redis.call('ZADD', KEYS[5], created_at, run_id)
redis.call('ZADD', KEYS[6], created_at, run_id)
redis.call('HINCRBY', KEYS[9], function_id, 1)
for i = 1, n do
  redis.call('SADD', KEYS[18 + i], run_id)
end
if not started then
  redis.call('ZADD', KEYS[7], created_at, run_id)
  redis.call('ZADD', KEYS[8], created_at, run_id)
  if admitted == 'later' then
    return {'later', run_id, start}
  elseif admitted == 'wait' then
    return {'wait', run_id, woken}
  end
  return {'created', run_id}
end
redis.call('ZADD', KEYS[16], created_at, run_id)
redis.call('ZADD', KEYS[17], created_at, run_id)
redis.call('HINCRBY', KEYS[18], function_id, 1)
local deadline = ARGV[14]
redis.call('HSET', KEYS[14], job_id, token)
redis.call('HSET', KEYS[15], job_id, deadline)
redis.call('ZADD', KEYS[11], deadline, job_id)
if admit_keys then
  return {'started', run_id, woken}
end
return {'started', run_id}
