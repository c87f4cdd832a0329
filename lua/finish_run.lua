--[[ finish_run: end a run once, dropping its pauses and its queued jobs, and store its
lifecycle events (inngest/function.finished, .failed, .cancelled) with the job that processes
them, in the same step: an invoking parent and on_failure handlers can never miss them.

With S steps (the function's last in-process steps, not saved yet), their memos are stored
first, as lua/save_step.lua stores them (first write wins; history merged, duration observed):
the run's last steps and its end are one transition. When a step already has another memo
(another execution got there first), nothing is written and "different" is returned: that
execution carries the run on.

The caller reads the run's pause set, those pauses and the run's jobs first and passes them
(their keys come in KEYS); if any of that changed since, nothing is written and "changed" is
returned so the caller reads again and retries.

The run moves from the Queued/Running status indexes to the one of its end status, enters the
ended index and the archiver's queue, and the counter of its end status is incremented.

KEYS[1]   run meta             hash    <p>:{<run>}:run
KEYS[2]   run pauses           set     <p>:{<run>}:pauses
KEYS[3]   pending              set     <p>:{<run>}:pending
KEYS[4]   pause expiry         zset    <p>:pauses:expiry
KEYS[5]   correlations         hash    <p>:pcorr
KEYS[6]   jobs                 hash    <p>:jobs
KEYS[7]   jobs due             zset    <p>:jobs:due
KEYS[8]   job owners           hash    <p>:jobs:owner
KEYS[9]   job leases           hash    <p>:jobs:lease
KEYS[10]  jobs by run          zset    <p>:jobs:by-run           "<run id>|<job id>"
KEYS[11]  queued runs          zset    <p>:runs:st:Queued        run id by created_at
KEYS[12]  function's queued    zset    <p>:runs:st:Queued:fn:<function>
KEYS[13]  running runs         zset    <p>:runs:st:Running
KEYS[14]  function's running   zset    <p>:runs:st:Running:fn:<function>
KEYS[15]  end status runs      zset    <p>:runs:st:<status>
KEYS[16]  function's end st.   zset    <p>:runs:st:<status>:fn:<function>
KEYS[17]  ended runs           zset    <p>:runs:ended            run id by ended_at
KEYS[18]  end status counter   hash    <p>:metric:runs_<completed|failed|cancelled>_total
KEYS[19]  archive queue        zset    <p>:history:runs          run id by ended_at
KEYS[20]  events               zset    <p>:events                internal id by received_at
KEYS[21]  events archive queue zset    <p>:history:events
KEYS[22]  trigger names        set     <p>:triggers
KEYS[23]  trigger globs        set     <p>:triggers:wild
KEYS[24]  trigger index built  string  <p>:triggers:built
KEYS[25]  job failures         hash    <p>:jobs:failures         (a dropped job's count goes too)
KEYS[26]  steps                hash    <p>:{<run>}:steps
KEYS[27]  stack                list    <p>:{<run>}:stack
KEYS[28]  history              hash    <p>:{<run>}:history
KEYS[29]  step durations       hash    <p>:metric:step_duration_seconds
then, for pause i (i = 1..P), three keys:
          pause                string  <p>:pause:<id>
          pause index          set     <p>:pidx:<event>:<path>:<value> or <p>:pscan:<event>
          index paths          hash    <p>:pidx-paths:<event>
then, for job j (j = 1..J):
          job tombstone        string  <p>:job-done:<job id>
then, for lifecycle event e (e = 1..E), five keys as lua/ingest_events.lua takes them
then, with a slot release (the ending job held concurrency slots): waiting set
          <p>:slots:waiting, limits hash <p>:slots:limits, then for each constraint its slots
          zset <p>:slots:<name> and waiters zset <p>:slots-wait:<name> (as slots_release.lua's)

ARGV[1]   status: "Completed", "Failed" or "Cancelled"
ARGV[2]   output, JSON text
ARGV[3]   error, JSON text
ARGV[4]   now (ended_at), ms since epoch
ARGV[5]   run id
ARGV[6]   P, number of pauses
ARGV[7]   J, number of jobs
ARGV[8]   job tombstone TTL, ms
ARGV[9]   function id (as read from the run; the index keys above are its)
ARGV[10]  finish token, unique per finish attempt (the first lifecycle event's internal id)
ARGV[11]  E, number of lifecycle events
ARGV[12]  their job's send-by, ms since epoch
ARGV[13]  S, number of steps to save first (0 or absent: none)
then, for pause i, five values: pause id, pause JSON as read ("" if it was missing), index
          mode ("idx", "scan" or ""), index path ("" unless idx), correlation id ("" for none)
then, for job j: job id
then, for lifecycle event e, five values as lua/ingest_events.lua takes them (their dedupe
          flags are "0": the run ends once, so its events are stored once)
then, for step s, five values as lua/save_step.lua takes them: hashed step id, memo JSON,
          history info ("" for none), duration bucket ("" observes nothing), duration (s)
then, with a slot release: the job giving its slots back, now (ms), slot lease (ms), resend
          after (ms), then name and limit of each constraint (slots_release.lua's ARGV)

With a slot release, the call that ends the run (or its repeat) also gives the job's slots
back and wakes the waiters that now fit, as slots_release.lua does: the job stops here.

Returns {code, job id[, woken]}; the job id (of the lifecycle events' processing job, "" if
none was made: nothing listens to them) comes with "finished" only, and so does `woken` (with
a slot release only: Job JSON of the waiters it woke, for the caller to send):
  "finished"   this call ended the run, or a repeat of the call that did (same token: a lost
               reply re-sent), answering that call's job id
  "ended"      the run had already ended; nothing written
  "missing"    no such run; nothing written
  "changed"    the run's pauses or jobs (or its function) differ from the ones passed;
               nothing written
  "different"  a step passed already has another memo; nothing written
]]

-- @include "run_status.lua"
-- @include "drop_pause.lua"
-- @include "archive.lua"
-- @include "enqueue.lua"
-- @include "ingest.lua"
-- @include "memoize.lua"
-- @include "merge_history.lua"
-- @include "observe_step.lua"
-- @include "slots.lua"
-- @include "release.lua"
-- @include "unsaved_steps.lua"

local meta_key, run_pauses_key, pending_key = KEYS[1], KEYS[2], KEYS[3]
local expiry_key, corr_key = KEYS[4], KEYS[5]
local jobs_key, due_key, owners_key, leases_key, by_run_key =
  KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local run_id = ARGV[5]
local n_pauses, n_jobs = tonumber(ARGV[6]), tonumber(ARGV[7])
local tombstone_ttl = ARGV[8]
local function_id = ARGV[9]
local token, n_events, send_by = ARGV[10], tonumber(ARGV[11]), ARGV[12]
local failures_key = KEYS[25]
local steps_key, stack_key, history_key, durations_key = KEYS[26], KEYS[27], KEYS[28], KEYS[29]
local n_steps = tonumber(ARGV[13] or '0')
local FIXED_KEYS, FIXED_ARGS = 29, 13
local job_keys_at = FIXED_KEYS + 3 * n_pauses
local job_args_at = FIXED_ARGS + 5 * n_pauses
local step_args_at = job_args_at + n_jobs + 5 * n_events
local release_at = step_args_at + 5 * n_steps
local release_keys_at = job_keys_at + n_jobs + 5 * n_events

-- "finished": with a slot release, the ending job's slots are given back first.
local function finished(event_job)
  if #ARGV <= release_at then
    return {'finished', event_job}
  end
  local woken = {}
  release_tail(KEYS[6], KEYS[7], KEYS[8], KEYS[9], {unpack(KEYS, release_keys_at + 1)},
               {unpack(ARGV, release_at + 2)}, ARGV[release_at + 1], woken)
  return {'finished', event_job, woken}
end

local status = redis.call('HGET', meta_key, 'status')
if not status then
  return {'missing', ''}
end
if is_ended(status) then
  if token ~= '' and redis.call('HGET', meta_key, 'finish_token') == token then
    return finished(redis.call('HGET', meta_key, 'finish_job') or '')
  end
  return {'ended', ''}
end

-- The caller's snapshot must still be the truth.
if redis.call('HGET', meta_key, 'function_id') ~= function_id then
  return {'changed', ''}
end
if redis.call('SCARD', run_pauses_key) ~= n_pauses then
  return {'changed', ''}
end
for i = 1, n_pauses do
  local a = FIXED_ARGS + 5 * (i - 1)
  if (redis.call('GET', KEYS[FIXED_KEYS + 3 * (i - 1) + 1]) or '') ~= ARGV[a + 2]
    or redis.call('SISMEMBER', run_pauses_key, ARGV[a + 1]) == 0 then
    return {'changed', ''}
  end
end
local prefix = run_id .. '|'
if redis.call('ZLEXCOUNT', by_run_key, '[' .. prefix, '(' .. run_id .. '}') ~= n_jobs then
  return {'changed', ''}
end
for j = 1, n_jobs do
  if not redis.call('ZSCORE', by_run_key, prefix .. ARGV[job_args_at + j]) then
    return {'changed', ''}
  end
end
local new_steps = unsaved_steps(steps_key, step_args_at, n_steps)
if not new_steps then
  return {'different', ''}
end
save_unsaved({meta = meta_key, steps = steps_key, stack = stack_key, pending = pending_key,
  history = history_key, durations = durations_key}, new_steps, function_id)

redis.call('HSET', meta_key, 'status', ARGV[1], 'output', ARGV[2], 'error', ARGV[3],
  'ended_at', ARGV[4])
redis.call('DEL', pending_key)

local created_at = redis.call('HGET', meta_key, 'created_at')
for i = 11, 14 do
  redis.call('ZREM', KEYS[i], run_id)
end
redis.call('ZADD', KEYS[15], created_at, run_id)
redis.call('ZADD', KEYS[16], created_at, run_id)
redis.call('ZADD', KEYS[17], ARGV[4], run_id)
redis.call('HINCRBY', KEYS[18], function_id, 1)
queue_archive(KEYS[19], run_id, ARGV[4])

for i = 1, n_pauses do
  local a = FIXED_ARGS + 5 * (i - 1)
  local k = FIXED_KEYS + 3 * (i - 1)
  local keys = {pause = KEYS[k + 1], expiry = expiry_key, index = KEYS[k + 2],
    paths = KEYS[k + 3], correlations = corr_key, run_pauses = run_pauses_key}
  drop_pause(keys, ARGV[a + 1], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5])
end

for j = 1, n_jobs do
  local job_id = ARGV[job_args_at + j]
  redis.call('HDEL', jobs_key, job_id)
  redis.call('ZREM', due_key, job_id)
  redis.call('HDEL', owners_key, job_id)
  redis.call('HDEL', leases_key, job_id)
  redis.call('ZREM', by_run_key, prefix .. job_id)
  redis.call('HDEL', failures_key, job_id)
  redis.call('SET', KEYS[job_keys_at + j], '1', 'PX', tombstone_ttl)
end

local ingest_keys = {events = KEYS[20], archive = KEYS[21], jobs = jobs_key, due = due_key,
  by_run = by_run_key, triggers = KEYS[22], wild = KEYS[23], built = KEYS[24]}
local _, event_job = ingest(ingest_keys, job_keys_at + n_jobs, job_args_at + n_jobs, n_events,
  ARGV[4], 0, send_by)
redis.call('HSET', meta_key, 'finish_token', token, 'finish_job', event_job)
return finished(event_job)
