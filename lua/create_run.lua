--[[ create_run: create a run (status Queued) once, optionally with memoized steps; or
create it started, its start job leased to the caller, when the caller runs it next.

A rerun passes the original run id; a replay also passes the steps it keeps (memos, stack
order and history records), so the new run starts as if those steps had already run.

With a lease token (ARGV[13]) the run is created Running (started_at = created_at, counted
as queued and as started, as mark_started.lua would) and its start job is written leased to
that token until ARGV[14] (its send-by is that deadline: if the caller dies, the tick
resends the job when the lease runs out, and the delivery that takes it over finds the run
started). One script call so replaces create_run + begin_job + mark_started.

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
KEYS[14]       job owners            hash    <p>:jobs:owner             job id -> lease token
KEYS[15]       job leases            hash    <p>:jobs:lease             job id -> deadline, ms
KEYS[16]       running runs          zset    <p>:runs:st:Running        (used only when leased)
KEYS[17]       function's running    zset    <p>:runs:st:Running:fn:<function>
KEYS[18]       started counter       hash    <p>:metric:runs_started_total   function -> count
KEYS[19..18+n] event -> runs links   set     <p>:event-runs:<event internal id>, one per event
KEYS[19+n]     idempotency key       string  <p>:idem:<function>:<key>  (only when keyed)

ARGV[1]        run id
ARGV[2]        function id
ARGV[3]        created_at, ms since epoch
ARGV[4]        events, JSON list (wire form)
ARGV[5]        event internal ids, JSON list
ARGV[6]        correlation id, "" for none
ARGV[7]        idempotency TTL, ms (used only when KEYS[14+n] is given)
ARGV[8]        original run id (rerun / replay), "" for none
ARGV[9]        memoized steps, "" for none, else JSON
               {"stack": [step id...], "steps": {step id: memo JSON text},
                "history": {step id: history record JSON text}}
ARGV[10]       start job id, "" for none
ARGV[11]       start job JSON
ARGV[12]       start job send-by, ms since epoch
ARGV[13]       lease token, "" for none (create Queued); needs a start job
ARGV[14]       lease deadline, ms since epoch (used only with a token)
ARGV[15..14+n] event internal ids, one per KEYS[19..18+n]

The run and its start job are written together: no crash can leave a Queued run that no job
will ever start. The job is written only when the run is created.

Returns {code, run id}:
  {"started", run id}    created Running, its start job leased to ARGV[13]; a repeat of
                         that call (a lost reply) answers the same while the job is leased
                         to that token
  {"created", run id}    the run was created Queued (and its start job queued)
  {"exists", run id}     the idempotency key is taken (its run id) or this run id exists
]]

-- @include "enqueue.lua"

local meta_key, steps_key, stack_key, history_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local run_id, function_id, created_at = ARGV[1], ARGV[2], ARGV[3]
local job_id, token = ARGV[10], ARGV[13]
local n = #ARGV - 14

-- The answer to a call already made: "started" if that call started the run for this token.
local function existing(found)
  if token ~= '' and found == run_id and redis.call('HGET', KEYS[14], job_id) == token then
    return {'started', run_id}
  end
  return {'exists', found}
end

if #KEYS == 19 + n then
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
  return {'created', run_id}
end
redis.call('ZADD', KEYS[16], created_at, run_id)
redis.call('ZADD', KEYS[17], created_at, run_id)
redis.call('HINCRBY', KEYS[18], function_id, 1)
local deadline = ARGV[14]
redis.call('HSET', KEYS[14], job_id, token)
redis.call('HSET', KEYS[15], job_id, deadline)
redis.call('ZADD', KEYS[11], deadline, job_id)
return {'started', run_id}
