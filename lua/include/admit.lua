-- A run's start job admitted under its function's concurrency and throttle limits
-- (start_run.lua, create_run.lua). Needs include/slots.lua, acquire.lua and throttle.lua
-- pasted before it.
--
-- `jobs`, `due`, `owners`, `leases`: the job keys (as start_run.lua's KEYS[1] to KEYS[4]).
-- `k`: the admission's keys in order: waiting set, limits hash, [throttle, ticket: only with
-- a throttle], then the slots and waiters zsets of each constraint (start_run.lua's KEYS[12]
-- and on). `a`: its arguments in order: score, slot lease ms, resend ms, park recheck ms,
-- throttle interval ms (0: no throttle), burst tolerance ms, deferred send-by slack ms,
-- countdown horizon ms, ticket slack ms, then name and limit of each constraint
-- (start_run.lua's ARGV[6] and on).
-- A throttle gives the run its start time (include/throttle.lua): a later one defers the job
-- and nothing else changes; then the job takes a slot in each concurrency constraint
-- (include/acquire.lua): a full one parks the job in its wait list. Waiters woken on the way
-- are appended to `woken`.
-- Returns 'ok' (admitted: a slot in each constraint), 'wait' (parked) or 'later', start (ms).
local function admit_start(jobs, due, owners, leases, k, a, job_id, now, woken)
  local base = 2
  local interval = tonumber(a[5])
  if interval > 0 then
    base = 4
    local start = throttle_start(k[3], k[4], now, interval, tonumber(a[6]), tonumber(a[9]))
    if start > now then
      throttle_defer(due, owners, leases, job_id, start, now, tonumber(a[7]), tonumber(a[8]))
      return 'later', start
    end
  end
  local q = {
    jobs = jobs, due = due, owners = owners, leases = leases, waiting = k[1], limits = k[2],
    now = now, lease_ms = tonumber(a[2]), resend_ms = tonumber(a[3]),
  }
  local constraints = {}
  for i = 1, (#k - base) / 2 do
    constraints[i] = {
      slots = k[base + 2 * i - 1], waiters = k[base + 2 * i],
      name = a[8 + 2 * i], limit = tonumber(a[9 + 2 * i]),
    }
  end
  if #constraints > 0
      and acquire_slots(q, constraints, job_id, tonumber(a[1]), tonumber(a[4]), woken) ~= 'ok' then
    return 'wait'  -- parked ('gone' cannot be: the job exists)
  end
  return 'ok'
end
