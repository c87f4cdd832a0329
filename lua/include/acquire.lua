-- Take a slot in every concurrency constraint of a job, or park the job (slots_acquire.lua,
-- start_run.lua). Needs include/slots.lua pasted before it.
--
-- `q` as in include/slots.lua; `constraints` a list of {slots, waiters, name, limit}; `score`
-- the job's place in the wait lists (lower starts first); `park_ms` a parked job's send-by
-- (a safety net), from now.
-- The job gets its slots only if every constraint has room for it after the waiters ahead of
-- it (by score) are woken: order is by score, not by arrival. A slot the job already holds
-- (reserved when it was woken, or held by an earlier delivery) counts as its own. Otherwise
-- the job gives back the slots it holds, joins the wait list of the first full constraint
-- and is parked (owner 'parked', send-by now + park_ms); whoever frees a slot wakes it.
-- Waiters woken on the way get a slot each and are appended to `woken` for the caller to send.
-- Returns 'ok' (a slot in every constraint until now + lease), 'wait' (parked) or 'gone' (a
-- slot is full and the job no longer exists: nothing parked).
local function acquire_slots(q, constraints, job_id, score, park_ms, woken)
  local held, blocked = {}, nil
  for i, c in ipairs(constraints) do
    slots_prune(q, c)
    held[i] = redis.call('ZSCORE', c.slots, job_id) ~= false
    if not held[i] and slots_fill(q, c, woken, score, job_id) <= 0 and not blocked then
      blocked = i
    end
  end

  if not blocked then
    for _, c in ipairs(constraints) do
      redis.call('ZADD', c.slots, q.now + q.lease_ms, job_id)
      if redis.call('ZREM', c.waiters, job_id) == 1 then
        slots_unlist(q, c)
      end
    end
    return 'ok'
  end

  for i, c in ipairs(constraints) do
    if redis.call('ZREM', c.waiters, job_id) == 1 then
      slots_unlist(q, c)
    end
    if held[i] then
      redis.call('ZREM', c.slots, job_id)
      slots_fill(q, c, woken)
    end
  end
  if redis.call('HEXISTS', q.jobs, job_id) == 0 then
    return 'gone'
  end
  local c = constraints[blocked]
  redis.call('ZADD', c.waiters, score, job_id)
  redis.call('SADD', q.waiting, c.name)
  redis.call('HSET', q.limits, c.name, c.limit)
  redis.call('HSET', q.owners, job_id, 'parked')
  redis.call('HSET', q.leases, job_id, q.now + park_ms)
  redis.call('ZADD', q.due, q.now + park_ms, job_id)
  return 'wait'
end
