--[[ create_run: create a run (status Queued) once, optionally with memoized steps.

A rerun passes the original run id; a replay also passes the steps it keeps (memos, stack
order and history records), so the new run starts as if those steps had already run.

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
KEYS[14..13+n] event -> runs links   set     <p>:event-runs:<event internal id>, one per event
KEYS[14+n]     idempotency key       string  <p>:idem:<function>:<key>  (only when keyed)

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
ARGV[13..12+n] event internal ids, one per KEYS[14..13+n]

The run and its start job are written together: no crash can leave a Queued run that no job
will ever start. The job is written only when the run is created.

Returns {code, run id}:
  {"created", run id}    the run was created (and its start job queued)
  {"exists", run id}     the idempotency key is taken (its run id) or this run id exists
]]

-- @include "enqueue.lua"

local meta_key, steps_key, stack_key, history_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local run_id, function_id, created_at = ARGV[1], ARGV[2], ARGV[3]
local n = #ARGV - 12

if #KEYS == 14 + n then
  local idem_key = KEYS[14 + n]
  local existing = redis.call('GET', idem_key)
  if existing then
    return {'exists', existing}
  end
  redis.call('SET', idem_key, run_id, 'PX', ARGV[7])
end

if redis.call('EXISTS', meta_key) == 1 then
  return {'exists', run_id}
end

redis.call('HSET', meta_key,
  'run_id', run_id,
  'function_id', function_id,
  'status', 'Queued',
  'events', ARGV[4],
  'event_ids', ARGV[5],
  'created_at', created_at,
  'started_at', '',
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
for i = 5, 8 do
  redis.call('ZADD', KEYS[i], created_at, run_id)
end
redis.call('HINCRBY', KEYS[9], function_id, 1)
for i = 1, n do
  redis.call('SADD', KEYS[13 + i], run_id)
end
if ARGV[10] ~= '' then
  enqueue(KEYS[10], KEYS[11], KEYS[12], KEYS[13], ARGV[10], ARGV[11], ARGV[12], run_id)
end
return {'created', run_id}
