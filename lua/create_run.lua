--[[ create_run: create a run (status Queued) once.

KEYS[1]        run meta              hash    <p>:{<run>}:run
KEYS[2]        all runs              zset    <p>:runs                  run id by created_at
KEYS[3]        the function's runs   zset    <p>:runs:fn:<function>    run id by created_at
KEYS[4..3+n]   event -> runs links   set     <p>:event-runs:<event internal id>, one per event
KEYS[4+n]      idempotency key       string  <p>:idem:<function>:<key>  (only when keyed)

ARGV[1]        run id
ARGV[2]        function id
ARGV[3]        created_at, ms since epoch
ARGV[4]        events, JSON list (wire form)
ARGV[5]        event internal ids, JSON list
ARGV[6]        correlation id, "" for none
ARGV[7]        idempotency TTL, ms (used only when KEYS[4+n] is given)
ARGV[8..7+n]   event internal ids, one per KEYS[4..3+n]

Returns {code, run id}:
  {"created", run id}    the run was created
  {"exists", run id}     the idempotency key is taken (its run id) or this run id exists
]]

local meta_key, runs_key, fn_runs_key = KEYS[1], KEYS[2], KEYS[3]
local run_id, created_at = ARGV[1], ARGV[3]
local n = #ARGV - 7

if #KEYS == 4 + n then
  local idem_key = KEYS[4 + n]
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
  'function_id', ARGV[2],
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
redis.call('ZADD', runs_key, created_at, run_id)
redis.call('ZADD', fn_runs_key, created_at, run_id)
for i = 1, n do
  redis.call('SADD', KEYS[3 + i], run_id)
end
return {'created', run_id}
