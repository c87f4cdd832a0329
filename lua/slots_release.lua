--[[ slots_release: give back a job's concurrency slots and wake the waiters that now fit.

KEYS[1]        jobs          hash  <p>:jobs                job id -> Job JSON
KEYS[2]        jobs due      zset  <p>:jobs:due            job id by send-by (ms)
KEYS[3]        job owners    hash  <p>:jobs:owner          job id -> lease token | 'parked' | 'woken'
KEYS[4]        job leases    hash  <p>:jobs:lease          job id -> lease deadline (ms)
KEYS[5]        waiting       set   <p>:slots:waiting       names of constraints with a wait list
KEYS[6]        limits        hash  <p>:slots:limits        constraint name -> limit, while it
                                                           has a wait list (dropped with it)
KEYS[5+2i]     slots of i    zset  <p>:slots:<name>        executing job id -> lease expiry (ms)
KEYS[6+2i]     waiters of i  zset  <p>:slots-wait:<name>   parked job id -> score
               (i = 1..n)

ARGV[1]        job id giving its slots back, or "" to only wake waiters (the tick's sweep
               after holders died: their expired leases are pruned here)
ARGV[2]        now, ms since epoch
ARGV[3]        slot lease, ms: a woken job's slot is reserved until now + this
ARGV[4]        resend after, ms: a woken job's send-by is now + this
ARGV[3+2i]     name of constraint i
ARGV[4+2i]     limit of constraint i (>= 1)

Releasing twice is harmless (the second finds nothing to remove). Waiters are woken in
score order; a waiter that is no longer parked (finished, cancelled) just leaves the list.

Returns {woken Job JSON...}: the jobs the caller must send now.
]]

-- @include "slots.lua"
-- @include "release.lua"

local woken = {}
release_tail(KEYS[1], KEYS[2], KEYS[3], KEYS[4], {unpack(KEYS, 5)}, {unpack(ARGV, 2)}, ARGV[1],
             woken)
return woken
