--[[ slots_acquire: take a slot in every concurrency constraint of a job, or park the job.

KEYS[1]        jobs          hash  <p>:jobs                job id -> Job JSON
KEYS[2]        jobs due      zset  <p>:jobs:due            job id by send-by (ms)
KEYS[3]        job owners    hash  <p>:jobs:owner          job id -> lease token | 'parked' | 'woken'
KEYS[4]        job leases    hash  <p>:jobs:lease          job id -> lease deadline (ms)
KEYS[5]        waiting       set   <p>:slots:waiting       names of constraints with a wait list
KEYS[6]        limits        hash  <p>:slots:limits        constraint name -> limit (for the tick),
                                                           while it has a wait list
KEYS[5+2i]     slots of i    zset  <p>:slots:<name>        executing job id -> lease expiry (ms)
KEYS[6+2i]     waiters of i  zset  <p>:slots-wait:<name>   parked job id -> score
               (i = 1..n, n = 1 or 2 constraints)

ARGV[1]        job id
ARGV[2]        score: run created_at (ms) - priority (s) * 1000; lower starts first
ARGV[3]        now, ms since epoch
ARGV[4]        slot lease, ms (the holder renews it while it executes)
ARGV[5]        resend after, ms: a woken job's send-by is now + this
ARGV[6]        park recheck, ms: a parked job's send-by (safety net) is now + this
ARGV[5+2i]     name of constraint i
ARGV[6+2i]     limit of constraint i (>= 1)

The job gets its slots only if every constraint has room for it after the waiters ahead of
it (by score) are woken: order is by score, not by arrival. A slot the job already holds
(reserved when it was woken, or held by an earlier delivery) counts as its own. Otherwise
the job gives back the slots it holds, joins the wait list of the first full constraint
and is parked (owner 'parked', send-by now + recheck); whoever frees a slot wakes it.
Waiters woken on the way get a slot each and are returned for the caller to send.

Returns:
  {"ok", {woken Job JSON...}}     the job holds a slot in every constraint until now + lease
  {"wait", {woken Job JSON...}}   the job is parked
  {"gone", {woken Job JSON...}}   a slot is full and the job no longer exists; nothing parked
]]

-- @include "slots.lua"

local q = {
  jobs = KEYS[1], due = KEYS[2], owners = KEYS[3], leases = KEYS[4], waiting = KEYS[5],
  limits = KEYS[6], now = tonumber(ARGV[3]), lease_ms = tonumber(ARGV[4]), resend_ms = tonumber(ARGV[5]),
}
local job_id, score, park_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[6])

local constraints, held = {}, {}
for i = 1, (#KEYS - 6) / 2 do
  constraints[i] = {
    slots = KEYS[5 + 2 * i], waiters = KEYS[6 + 2 * i],
    name = ARGV[5 + 2 * i], limit = tonumber(ARGV[6 + 2 * i]),
  }
end

local woken, blocked = {}, nil
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
  return {'ok', woken}
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
  return {'gone', woken}
end
local c = constraints[blocked]
redis.call('ZADD', c.waiters, score, job_id)
redis.call('SADD', q.waiting, c.name)
redis.call('HSET', q.limits, c.name, c.limit)
redis.call('HSET', q.owners, job_id, 'parked')
redis.call('HSET', q.leases, job_id, q.now + park_ms)
redis.call('ZADD', q.due, q.now + park_ms, job_id)
return {'wait', woken}
