-- A delivery that leased a job and never reported back (its process died: kill -9, OOM, a
-- segfault, os._exit; or it lost Redis for longer than its lease) counts as a failure of the
-- job, like a raised error does (fail_job.lua), so a job that kills its worker every time
-- is given up after a bounded number of deliveries instead of looping forever.
-- Called when an expired lease is taken over or cleared; `owner` is the expired holder.
-- Owners 'parked', 'woken' and 'deferred' are flow-control states (include/slots.lua,
-- slots_throttle.lua), not deliveries, and are not counted.
local function count_lost_delivery(failures_key, job_id, owner)
  if owner and owner ~= 'parked' and owner ~= 'woken' and owner ~= 'deferred' then
    return redis.call('HINCRBY', failures_key, job_id, 1)
  end
  return tonumber(redis.call('HGET', failures_key, job_id) or '0')
end
