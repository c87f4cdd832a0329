-- Create a queued job unless one with this id is queued or finished recently (tombstone).
-- Returns 1 created, 0 queued already, -1 tombstoned.
local function enqueue(jobs_key, due_key, by_run_key, tombstone_key, job_id, job_json, send_by,
                       run_id)
  if redis.call('HEXISTS', jobs_key, job_id) == 1 then
    return 0
  end
  if redis.call('EXISTS', tombstone_key) == 1 then
    return -1
  end
  redis.call('HSET', jobs_key, job_id, job_json)
  redis.call('ZADD', due_key, send_by, job_id)
  if run_id ~= '' then
    redis.call('ZADD', by_run_key, 0, run_id .. '|' .. job_id)
  end
  return 1
end
