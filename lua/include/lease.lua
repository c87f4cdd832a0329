-- Lease a recorded job to a delivery (begin_job.lua, start_run.lua). Needs
-- include/lost_delivery.lua pasted before it.
-- The lease is taken when nobody holds it, the holder is `token`, or the holder's lease has
-- expired (deadline <= now: that delivery counts as lost). Its deadline, now + lease_ms,
-- becomes the job's send-by, so the tick resends the job if the lease runs out unrenewed.
-- Returns job JSON, failures, the holder before this call (or nil); or nil, 'gone' (no such
-- job) / nil, 'busy' (another token holds a live lease: nothing written).
local function lease_job(jobs_key, due_key, owners_key, leases_key, failures_key,
                         job_id, token, now, lease_ms)
  local job = redis.call('HGET', jobs_key, job_id)
  if not job then
    return nil, 'gone'
  end
  local owner = redis.call('HGET', owners_key, job_id)
  local failures = tonumber(redis.call('HGET', failures_key, job_id) or '0')
  if owner and owner ~= token then
    local deadline = tonumber(redis.call('HGET', leases_key, job_id) or '0')
    if deadline > now then
      return nil, 'busy'
    end
    failures = count_lost_delivery(failures_key, job_id, owner)
  end
  local deadline = now + lease_ms
  redis.call('HSET', owners_key, job_id, token)
  redis.call('HSET', leases_key, job_id, deadline)
  redis.call('ZADD', due_key, deadline, job_id)
  return job, failures, owner
end
