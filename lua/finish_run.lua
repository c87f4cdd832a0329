--[[ finish_run: end a run once, dropping its pauses and its queued jobs.

The caller reads the run's pause set, those pauses and the run's jobs first and passes them
(their keys come in KEYS); if any of that changed since, nothing is written and "changed" is
returned so the caller reads again and retries.

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
then, for pause i (i = 1..P), three keys:
          pause                string  <p>:pause:<id>
          pause index          set     <p>:pidx:<event>:<path>:<value> or <p>:pscan:<event>
          index paths          hash    <p>:pidx-paths:<event>
then, for job j (j = 1..J):
          job tombstone        string  <p>:job-done:<job id>

ARGV[1]   status: "Completed", "Failed" or "Cancelled"
ARGV[2]   output, JSON text
ARGV[3]   error, JSON text
ARGV[4]   now (ended_at), ms since epoch
ARGV[5]   run id
ARGV[6]   P, number of pauses
ARGV[7]   J, number of jobs
ARGV[8]   job tombstone TTL, ms
then, for pause i, five values: pause id, pause JSON as read ("" if it was missing), index
          mode ("idx", "scan" or ""), index path ("" unless idx), correlation id ("" for none)
then, for job j: job id

Returns:
  "finished"   this call ended the run
  "ended"      the run had already ended; nothing written
  "missing"    no such run; nothing written
  "changed"    the run's pauses or jobs differ from the ones passed; nothing written
]]

-- @include "run_status.lua"
-- @include "drop_pause.lua"

local meta_key, run_pauses_key, pending_key = KEYS[1], KEYS[2], KEYS[3]
local expiry_key, corr_key = KEYS[4], KEYS[5]
local jobs_key, due_key, owners_key, leases_key, by_run_key =
  KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local run_id = ARGV[5]
local n_pauses, n_jobs = tonumber(ARGV[6]), tonumber(ARGV[7])
local tombstone_ttl = ARGV[8]
local job_keys_at = 10 + 3 * n_pauses
local job_args_at = 8 + 5 * n_pauses

local status = redis.call('HGET', meta_key, 'status')
if not status then
  return 'missing'
end
if is_ended(status) then
  return 'ended'
end

-- The caller's snapshot must still be the truth.
if redis.call('SCARD', run_pauses_key) ~= n_pauses then
  return 'changed'
end
for i = 1, n_pauses do
  local a = 8 + 5 * (i - 1)
  if (redis.call('GET', KEYS[10 + 3 * (i - 1) + 1]) or '') ~= ARGV[a + 2]
    or redis.call('SISMEMBER', run_pauses_key, ARGV[a + 1]) == 0 then
    return 'changed'
  end
end
local prefix = run_id .. '|'
if redis.call('ZLEXCOUNT', by_run_key, '[' .. prefix, '(' .. run_id .. '}') ~= n_jobs then
  return 'changed'
end
for j = 1, n_jobs do
  if not redis.call('ZSCORE', by_run_key, prefix .. ARGV[job_args_at + j]) then
    return 'changed'
  end
end

redis.call('HSET', meta_key, 'status', ARGV[1], 'output', ARGV[2], 'error', ARGV[3],
  'ended_at', ARGV[4])
redis.call('DEL', pending_key)

for i = 1, n_pauses do
  local a = 8 + 5 * (i - 1)
  local k = 10 + 3 * (i - 1)
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
  redis.call('SET', KEYS[job_keys_at + j], '1', 'PX', tombstone_ttl)
end
return 'finished'
