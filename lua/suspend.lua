--[[ suspend: a run stops until later, in one step: the steps it stops on are recorded in its
history, the jobs that carry it on are queued, and the job that ran it is finished.

A run suspends on a sleep (its timer job, due at the wake time), a planned step (its edge job,
due now), a step's retry (its retry job, due after the backoff), a spent budget (its yield
job, due now) or a wait (its pause, saved here as lua/save_pause.lua saves it, and its timeout
job, due when it expires). Separate calls (save_pause, record_step, enqueue_job, finish_job)
left crash windows between them; here nothing comes between.

Each of the F follow-ups is a step to record (its hashed id and history info, merged as
lua/record_step.lua does; "" records nothing) and a job to queue (as lua/enqueue_job.lua does:
an id queued already or tombstoned is left alone). With P pending steps (parallel steps), the
run's pending set is replaced by them first and its `die` flag set (as lua/set_pending.lua).
With W pauses (a wait or an invoke; several among parallel steps), they are saved first; a
pause that exists already is left as it is (a replay), one refused for its correlation id
(mode "fail": a signal name another pending pause holds; only with W = 1) writes nothing at
all.

With S steps (in-process steps that ran before the stop, not saved yet), their memos are stored
first, as lua/save_step.lua stores them (first write wins; history merged, duration observed):
N steps and the sleep after them are one call. When one already has another memo (another
execution got there first), nothing is written and "different" is returned.

With a lookback (ARGV[15] > 0, W = 1: a wait for an event that also accepts one received up
to its lookback before it), the events of its name received since then are read from their recent
index (KEYS[20]) once its pause is saved, in the same step: none there (the run's own trigger
aside), nothing that arrived before the pause can match, and the call suspends as any wait
(an event stored after it finds the pause). Otherwise everything is written but the job is
not finished: "look" returns their ids for the caller to match (lua/consume_pause.lua resumes
the pause) before it finishes the job, so a crash before then runs the match again.

With E events (an invoke's `inngest/function.invoked`), they are stored with the job that
processes them, as lua/ingest_events.lua stores them (dedupe on their own id within the TTL,
so a replayed invoke emits once), with the job's broker message when given: the invoke's
pause, its event, its job and its message are one call.

The job that ran the call must still be this delivery's: present, and leased to ARGV[3] or to
nobody (an expired lease cleared by the tick, not taken over yet). It is then deleted and
tombstoned as lua/finish_job.lua does, the tombstone holding "<token> <code 1>:<job id 1> ...
<code F>:<job id F>", so a repeat of this call (a lost reply re-sent: same token, same
follow-up jobs) answers the first call's outcome; with events, the tombstone ends with
"event<1 if its message was pushed, else 0>=<their job id>" (empty: no job), answered again.

KEYS[1]   run meta             hash    <p>:{<run>}:run
KEYS[2]   history              hash    <p>:{<run>}:history     hashed step id -> record
KEYS[3]   pending              set     <p>:{<run>}:pending
KEYS[4]   jobs                 hash    <p>:jobs
KEYS[5]   jobs due             zset    <p>:jobs:due
KEYS[6]   job owners           hash    <p>:jobs:owner
KEYS[7]   job leases           hash    <p>:jobs:lease
KEYS[8]   jobs by run          zset    <p>:jobs:by-run         "<run id>|<job id>"
KEYS[9]   job failures         hash    <p>:jobs:failures
KEYS[10]  current tombstone    string  <p>:job-done:<current job id>
KEYS[11]  steps                hash    <p>:{<run>}:steps
KEYS[12]  stack                list    <p>:{<run>}:stack
KEYS[13]  step durations       hash    <p>:metric:step_duration_seconds
KEYS[14]  events               zset    <p>:events                internal id by received_at
KEYS[15]  events archive queue zset    <p>:history:events
KEYS[16]  trigger names        set     <p>:triggers
KEYS[17]  trigger globs        set     <p>:triggers:wild
KEYS[18]  trigger index built  string  <p>:triggers:built
KEYS[19]  broker list          list    the events' job's Celery queue (only read with ARGV[14])
KEYS[20]  recent events        zset    <p>:recent-events:<the wait's event name> (only read
                                       with ARGV[15] > 0)
then, for follow-up f (f = 1..F):
          its job's tombstone  string  <p>:job-done:<follow-up job id>
then, for pause w (w = 1..W), six keys as lua/save_pause.lua takes them (KEYS[1..6]: pause,
          expiry, index, index paths, correlations, run pauses)
then, for event e (e = 1..E), five keys as lua/ingest_events.lua takes them
then, with a slot release (the job held concurrency slots): waiting set <p>:slots:waiting,
          limits hash <p>:slots:limits, then for each constraint its slots zset
          <p>:slots:<name> and waiters zset <p>:slots-wait:<name> (as slots_release.lua's)

ARGV[1]   run id
ARGV[2]   current job id (the job whose delivery made this call)
ARGV[3]   lease token of that delivery
ARGV[4]   job tombstone TTL, ms
ARGV[5]   F, number of follow-ups
ARGV[6]   P, number of pending steps (0: the pending set is left alone)
ARGV[7]   W, number of pauses to save
ARGV[8]   S, number of steps to save first
ARGV[9]   function id (the step duration histogram's label; "" observes nothing)
ARGV[10]  E, number of events to store
ARGV[11]  now (the events' received_at), ms since epoch
ARGV[12]  events' dedupe TTL, ms
ARGV[13]  their job's send-by, ms since epoch
ARGV[14]  the broker message of job "event:<event 1's internal id>" ("" for none), LPUSHed
          onto KEYS[19] when that job is made (event 1 stored by this call), as
          lua/ingest_events.lua pushes it
ARGV[15]  lookback: the oldest received_at (ms) a recent event may have; 0 for none
ARGV[16]  at most this many recent events are read
ARGV[17]  an event id never matched (the run's trigger's), "" for none
then, for follow-up f, five values: hashed step id ("" for none), history info JSON ("" for
          none), job id, Job JSON, send-by (ms since epoch)
then, for pending step p: its hashed step id
then, for pause w, seven values as lua/save_pause.lua takes them (ARGV[1..7]: pause id,
          pause JSON, expires_at, index mode, index path, correlation id, correlation mode)
then, for step s (s = 1..S), five values: hashed step id, memo JSON, history info JSON,
          duration bucket and seconds (as lua/save_step.lua observes them)
then, for event e, five values as lua/ingest_events.lua takes them
then, with a slot release: now (ms), slot lease (ms), resend after (ms), then name and limit
          of each constraint (as slots_release.lua's ARGV[2] and on)

With a slot release, a suspended job gives its slots back and wakes the waiters that now fit
(as slots_release.lua does), in this call: the job stops here. A repeat releases again
(harmless) and answers the waiters that repeat woke, if any. "look" keeps the job, and its
slots with it: nothing is released then.

Returns {code, enqueued 1, ..., enqueued F[, events' job id, "1" if its message was pushed else
"0"][, woken]}; the enqueue codes come with "suspended" only, the events' job only with
events, `woken` only with a slot release (Job JSON of the waiters it woke, for the caller to
send):
  "suspended"  written (or a repeat of the call that wrote it: same token); each follow-up's
               code: 1 created, 0 queued already, -1 tombstoned (ran within the TTL); the
               events' job id ("" when none was made: duplicates)
  "ended"      the run has ended; nothing written
  "missing"    no such run; nothing written
  "lost"       the current job is gone or leased to another delivery; nothing written
  "conflict"   the pause's correlation id is held by another pending pause (mode "fail");
               nothing written
  "different"  a step passed already has another memo; nothing written
  "look"       written as "suspended" (same enqueue codes), but the job is left as it is:
               {"look", enqueued 1, ..., enqueued F, recent event id 1, ...}, oldest first,
               for the caller to match before it finishes the job; a repeat writes nothing
               new (its enqueue codes then 0) and answers the ids again
]]

-- @include "run_status.lua"
-- @include "enqueue.lua"
-- @include "merge_history.lua"
-- @include "save_pause.lua"
-- @include "memoize.lua"
-- @include "observe_step.lua"
-- @include "archive.lua"
-- @include "ingest.lua"
-- @include "slots.lua"
-- @include "release.lua"
-- @include "unsaved_steps.lua"

local meta_key, history_key, pending_key = KEYS[1], KEYS[2], KEYS[3]
local jobs_key, due_key, owners_key, leases_key, by_run_key, failures_key =
  KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local tombstone_key, steps_key, stack_key, durations_key = KEYS[10], KEYS[11], KEYS[12], KEYS[13]
local run_id, job_id, token, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local n_follow, n_pending, n_pause = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local n_steps, label, n_events = tonumber(ARGV[8]), ARGV[9], tonumber(ARGV[10])
local now, dedupe_ttl, send_by = ARGV[11], ARGV[12], ARGV[13]
local FIXED_KEYS, FIXED_ARGS = 20, 17
local since, skip = tonumber(ARGV[15]), ARGV[17]
local message = ARGV[14]
local pending_at = FIXED_ARGS + 5 * n_follow
local pause_at, pause_keys_at = pending_at + n_pending, FIXED_KEYS + n_follow
local steps_at = pause_at + 7 * n_pause
local events_at, event_keys_at = steps_at + 5 * n_steps, pause_keys_at + 6 * n_pause

local release_keys_at, release_at = event_keys_at + 5 * n_events, events_at + 5 * n_events

-- The answer of a suspend: with a slot release, the job's slots are given back first.
local function answer(codes, event_job, pushed)
  local reply = {'suspended'}
  for f = 1, n_follow do
    reply[f + 1] = tonumber(codes[f])
  end
  if n_events > 0 then
    reply[#reply + 1] = event_job
    reply[#reply + 1] = pushed
  end
  if #ARGV > release_at then
    local woken = {}
    release_tail(jobs_key, due_key, owners_key, leases_key, {unpack(KEYS, release_keys_at + 1)},
                 {unpack(ARGV, release_at + 1)}, job_id, woken)
    reply[#reply + 1] = woken
  end
  return reply
end

-- A repeat of the call that suspended the run: its job is gone and its tombstone names this
-- token and these follow-up jobs, with their enqueue codes (and the events' job).
local function repeated(done)
  local words = {}
  for word in string.gmatch(done, '%S+') do
    words[#words + 1] = word
  end
  local extra = n_events > 0 and 1 or 0
  if words[1] ~= token or #words ~= n_follow + 1 + extra then
    return nil
  end
  local codes = {}
  for f = 1, n_follow do
    local code, follow_id = string.match(words[f + 1], '^(-?%d+):(.*)$')
    if follow_id ~= ARGV[FIXED_ARGS + 5 * (f - 1) + 3] then
      return nil
    end
    codes[f] = code
  end
  local event_job, pushed = '', '0'
  if extra == 1 then
    pushed, event_job = string.match(words[n_follow + 2], '^event([01])=(.*)$')
    if not event_job then
      return nil
    end
  end
  return codes, event_job, pushed
end

local status = redis.call('HGET', meta_key, 'status')
if not status then
  return {'missing'}
end

local job = redis.call('HGET', jobs_key, job_id)
if not job then
  local done = redis.call('GET', tombstone_key)
  if done then
    local codes, event_job, pushed = repeated(done)
    if codes then
      return answer(codes, event_job, pushed)
    end
  end
end
if is_ended(status) then
  return {'ended'}
end
if not job then
  return {'lost'}
end
local owner = redis.call('HGET', owners_key, job_id)
if owner and owner ~= token then
  return {'lost'}
end

-- The steps that ran before the stop: any with another memo means another execution carries
-- the run on (checked before anything is written).
local new_steps = unsaved_steps(steps_key, steps_at, n_steps)
if not new_steps then
  return {'different'}
end

for w = 1, n_pause do
  local k, a = pause_keys_at + 6 * (w - 1), pause_at + 7 * (w - 1)
  local keys = {pause = KEYS[k + 1], expiry = KEYS[k + 2], index = KEYS[k + 3],
    paths = KEYS[k + 4], correlations = KEYS[k + 5], run_pauses = KEYS[k + 6]}
  if save_pause(keys, ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5],
      ARGV[a + 6], ARGV[a + 7]) == -2 then
    return {'conflict'}
  end
end

save_unsaved({meta = meta_key, steps = steps_key, stack = stack_key, pending = pending_key,
  history = history_key, durations = durations_key}, new_steps, label)

if n_pending > 0 then
  redis.call('DEL', pending_key)
  for p = 1, n_pending do
    redis.call('SADD', pending_key, ARGV[pending_at + p])
  end
  redis.call('HSET', meta_key, 'die', '1')
end

local codes = {}
for f = 1, n_follow do
  local a = FIXED_ARGS + 5 * (f - 1)
  if ARGV[a + 1] ~= '' then
    merge_history(history_key, ARGV[a + 1], ARGV[a + 2])
  end
  codes[f] = enqueue(jobs_key, due_key, by_run_key, KEYS[FIXED_KEYS + f], ARGV[a + 3],
    ARGV[a + 4], ARGV[a + 5], run_id)
end

local event_job, pushed = '', '0'
if n_events > 0 then
  local ingest_keys = {events = KEYS[14], archive = KEYS[15], jobs = jobs_key, due = due_key,
    by_run = by_run_key, triggers = KEYS[16], wild = KEYS[17], built = KEYS[18]}
  local _, named
  _, event_job, named = ingest(ingest_keys, event_keys_at, events_at, n_events, now,
    dedupe_ttl, send_by, message ~= '')
  if named and message ~= '' then
    redis.call('LPUSH', KEYS[19], message)
    pushed = '1'
  end
end

if since > 0 then
  local recent = {}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[20], since, now, 'LIMIT', 0, ARGV[16])) do
    if id ~= skip then
      recent[#recent + 1] = id
    end
  end
  if #recent > 0 then
    local reply = {'look'}
    for f = 1, n_follow do
      reply[#reply + 1] = tonumber(codes[f])
    end
    for _, id in ipairs(recent) do
      reply[#reply + 1] = id
    end
    return reply
  end
end

redis.call('HDEL', jobs_key, job_id)
redis.call('ZREM', due_key, job_id)
redis.call('HDEL', owners_key, job_id)
redis.call('HDEL', leases_key, job_id)
redis.call('HDEL', failures_key, job_id)
local job_run = cjson.decode(job)['run_id']
if type(job_run) == 'string' and job_run ~= '' then
  redis.call('ZREM', by_run_key, job_run .. '|' .. job_id)
end
local done = {token}
for f = 1, n_follow do
  done[f + 1] = codes[f] .. ':' .. ARGV[FIXED_ARGS + 5 * (f - 1) + 3]
end
if n_events > 0 then
  done[n_follow + 2] = 'event' .. pushed .. '=' .. event_job
end
redis.call('SET', tombstone_key, table.concat(done, ' '), 'PX', ttl)
return answer(codes, event_job, pushed)
