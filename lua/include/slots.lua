-- Concurrency slots, shared by slots_acquire.lua and slots_release.lua.
--
-- A constraint `c` has a slot set (zset: executing job id -> lease expiry, ms) and a wait list
-- (zset: parked job id -> score, lower first). A parked job stays in the jobs hash with owner
-- 'parked' (a live lease, so a stray delivery of it is refused as busy); waking it gives it a
-- slot (reserved for one lease), owner 'woken' with lease 0 (any delivery may take it) and a
-- send-by of now + resend, so the tick sends it again if the caller's send is lost.
--
-- `q` is a table {jobs, due, owners, leases, waiting, limits, now, lease_ms, resend_ms} and
-- `c` one of {slots, waiters, name, limit}. A constraint is in `waiting` (and its limit in
-- `limits`, for the tick's sweep) exactly while its wait list is not empty.

-- The wait list of `c` may have emptied: forget the constraint (`slots_unlist`).
local function slots_unlist(q, c)
  if redis.call('EXISTS', c.waiters) == 0 then
    redis.call('SREM', q.waiting, c.name)
    redis.call('HDEL', q.limits, c.name)
  end
end

-- Drop holders whose lease ran out (their worker died without releasing).
local function slots_prune(q, c)
  redis.call('ZREMRANGEBYSCORE', c.slots, '-inf', q.now)
end

-- Give a slot of `c` to the parked job `job_id`; its JSON, or nil if it is no longer parked
-- (finished, cancelled, or already running again): then it simply leaves the wait list.
local function slots_wake(q, c, job_id)
  local job = redis.call('HGET', q.jobs, job_id)
  if not job or redis.call('HGET', q.owners, job_id) ~= 'parked' then
    return nil
  end
  redis.call('ZADD', c.slots, q.now + q.lease_ms, job_id)
  redis.call('HSET', q.owners, job_id, 'woken')
  redis.call('HSET', q.leases, job_id, 0)
  redis.call('ZADD', q.due, q.now + q.resend_ms, job_id)
  return job
end

-- Wake waiters of `c` in score order while it has free slots, appending their Job JSON to
-- `woken`. With `stop_id`, only waiters ahead of (stop_score, stop_id) are woken (ties are
-- ordered by id, as the zset orders them). Returns the free slots left.
local function slots_fill(q, c, woken, stop_score, stop_id)
  local free = c.limit - redis.call('ZCARD', c.slots)
  while free > 0 do
    local head = redis.call('ZRANGE', c.waiters, 0, 0, 'WITHSCORES')
    if #head == 0 then
      break
    end
    local id, score = head[1], tonumber(head[2])
    if stop_id and (id == stop_id or score > stop_score
                    or (score == stop_score and id > stop_id)) then
      break
    end
    redis.call('ZREM', c.waiters, id)
    local job = slots_wake(q, c, id)
    if job then
      woken[#woken + 1] = job
      free = free - 1
    end
  end
  slots_unlist(q, c)
  return free
end
