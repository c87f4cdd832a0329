-- A run's start time under a GCRA throttle, and a start job deferred to it
-- (slots_throttle.lua, start_run.lua).
--
-- GCRA with reservation: each run is given the earliest start the rate allows and the
-- throttle's arrival time moves one interval on, so excess starts queue up one interval apart
-- and none is dropped or retried in a herd. The run's ticket makes this idempotent: a start
-- job delivered again (or early) gets the same start time and consumes nothing.

-- The run's start time (ms): its ticket's, or reserved now. `tolerance`: limit + burst
-- starts may go back to back when the throttle is idle; the ticket lives until its start
-- time + ticket_slack.
local function throttle_start(throttle_key, ticket_key, now, interval, tolerance, ticket_slack)
  local start = tonumber(redis.call('GET', ticket_key) or '')
  if not start then
    local tat = tonumber(redis.call('GET', throttle_key) or '') or now
    if tat < now then
      tat = now
    end
    start = math.max(now, tat - tolerance)
    local next_tat = tat + interval
    redis.call('SET', throttle_key, next_tat, 'PX', next_tat - now)
    redis.call('SET', ticket_key, start, 'PX', start - now + ticket_slack)
  end
  return start
end

-- Defer a start job to its later start time in place: owner 'deferred', lease 0 (the
-- delivery at its start time may take it at once), send-by start + slack when the start is
-- within `horizon` (the caller sends it with a countdown), else the start (the tick sends it).
local function throttle_defer(due_key, owners_key, leases_key, job_id, start, now, slack, horizon)
  local send_by = start
  if start - now <= horizon then
    send_by = start + slack
  end
  redis.call('HSET', owners_key, job_id, 'deferred')
  redis.call('HSET', leases_key, job_id, 0)
  redis.call('ZADD', due_key, send_by, job_id)
end
