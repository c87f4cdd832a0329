--[[ enqueue_job: create a queued job unless it exists or ran recently.

KEYS[1]  jobs           hash    <p>:jobs               job id -> Job JSON
KEYS[2]  jobs due       zset    <p>:jobs:due           job id by send-by time
KEYS[3]  jobs by run    zset    <p>:jobs:by-run        "<run id>|<job id>", score 0
KEYS[4]  tombstone      string  <p>:job-done:<job id>
KEYS[5]  run meta       hash    <p>:{<run>}:run        (only when the job has a run id)

ARGV[1]  job id
ARGV[2]  Job JSON
ARGV[3]  send-by, ms since epoch: when the tick (re)sends it if nobody has begun it
ARGV[4]  run id, "" for none

Returns:
  1   created
  0   a job with this id is queued; nothing written
  -1  a job with this id finished within the tombstone TTL; nothing written
  -2  the job's run has ended; nothing written
]]

-- @include "run_status.lua"
-- @include "enqueue.lua"

local jobs_key, due_key, by_run_key, tombstone_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local job_id, run_id = ARGV[1], ARGV[4]

if run_id ~= '' then
  local status = redis.call('HGET', KEYS[5], 'status')
  if status and is_ended(status) then
    return -2
  end
end
return enqueue(jobs_key, due_key, by_run_key, tombstone_key, job_id, ARGV[2], ARGV[3], run_id)
