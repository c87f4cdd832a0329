-- Give back a job's concurrency slots and wake the waiters that now fit (slots_release.lua;
-- suspend.lua as the job stops). Needs include/slots.lua pasted before it.
--
-- `q` as in include/slots.lua; `constraints` a list of {slots, waiters, name, limit};
-- `job_id` "" to only wake waiters (expired holders are pruned). Releasing twice is harmless
-- (the second finds nothing to remove). Woken waiters' Job JSON is appended to `woken`.
local function release_slots(q, constraints, job_id, woken)
  for _, c in ipairs(constraints) do
    if job_id ~= '' then
      redis.call('ZREM', c.slots, job_id)
    end
    slots_prune(q, c)
    slots_fill(q, c, woken)
  end
end

-- A release given as a script's tail: `k` its keys (waiting set, limits hash, then slots and
-- waiters of each constraint), `a` its arguments (now ms, slot lease ms, resend ms, then
-- name and limit of each constraint), after the job keys.
local function release_tail(jobs, due, owners, leases, k, a, job_id, woken)
  local q = {
    jobs = jobs, due = due, owners = owners, leases = leases, waiting = k[1], limits = k[2],
    now = tonumber(a[1]), lease_ms = tonumber(a[2]), resend_ms = tonumber(a[3]),
  }
  local constraints = {}
  for i = 1, (#k - 2) / 2 do
    constraints[i] = {
      slots = k[1 + 2 * i], waiters = k[2 + 2 * i], name = a[2 + 2 * i], limit = tonumber(a[3 + 2 * i]),
    }
  end
  release_slots(q, constraints, job_id, woken)
end
