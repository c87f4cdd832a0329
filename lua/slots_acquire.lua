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

What include/acquire.lua does (start_run.lua does it too, for a start job it leases): the
job gets its slots only if every constraint has room for it after the waiters ahead of it
(by score) are woken; otherwise it is parked in the wait list of the first full constraint
(owner 'parked', send-by now + recheck) and whoever frees a slot wakes it. Waiters woken on
the way get a slot each and are returned for the caller to send.

Returns:
  {"ok", {woken Job JSON...}}     the job holds a slot in every constraint until now + lease
  {"wait", {woken Job JSON...}}   the job is parked
  {"gone", {woken Job JSON...}}   a slot is full and the job no longer exists; nothing parked
]]

-- @include "slots.lua"
-- @include "acquire.lua"

local q = {
  jobs = KEYS[1], due = KEYS[2], owners = KEYS[3], leases = KEYS[4], waiting = KEYS[5],
  limits = KEYS[6], now = tonumber(ARGV[3]), lease_ms = tonumber(ARGV[4]), resend_ms = tonumber(ARGV[5]),
}

local constraints = {}
for i = 1, (#KEYS - 6) / 2 do
  constraints[i] = {
    slots = KEYS[5 + 2 * i], waiters = KEYS[6 + 2 * i],
    name = ARGV[5 + 2 * i], limit = tonumber(ARGV[6 + 2 * i]),
  }
end

local woken = {}
local code = acquire_slots(q, constraints, ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[6]), woken)
return {code, woken}
