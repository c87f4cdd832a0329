--[[ release_due: hand out jobs whose send-by time has passed, for the tick to (re)send.

Covers timers now due, jobs sent but never begun, and jobs whose lease expired (worker died).

KEYS[1]  jobs          hash  <p>:jobs
KEYS[2]  jobs due      zset  <p>:jobs:due      job id by send-by / lease deadline
KEYS[3]  job owners    hash  <p>:jobs:owner
KEYS[4]  job leases    hash  <p>:jobs:lease
KEYS[5]  job failures  hash  <p>:jobs:failures  (an expired delivery counts as failed)

ARGV[1]  now, ms since epoch
ARGV[2]  resend after, ms: each released job's send-by becomes now + this
ARGV[3]  limit, max jobs released
ARGV[4]  lookahead, ms: also release unleased jobs due up to now + this (the caller sends
         them with a countdown to their due time, so a timer fires on time, not on the tick)
ARGV[5]  recent, ms (optional): release what fell due since now - this first, then older
         entries, so a backlog of long-unstarted jobs (their resend deadlines long past) never
         goes ahead of timers falling due now

Expired leases (deadline <= now) are cleared so the redelivered copy can begin; the delivery
that held one counts as failed (include/lost_delivery.lua). A leased job's send-by is its
lease deadline, so a live lease is never released. Ids without a job are dropped from the
due set.
Returns a flat list: each released job's JSON text followed by its due time (ms), possibly
empty.
]]

-- @include "lost_delivery.lua"

local jobs_key, due_key, owners_key, leases_key, failures_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now = tonumber(ARGV[1])

local horizon = now + tonumber(ARGV[4] or '0')

local limit = tonumber(ARGV[3])
local released = {}

local function release(ids)
  for i = 1, #ids, 2 do
    local job_id, due = ids[i], tonumber(ids[i + 1])
    local job = redis.call('HGET', jobs_key, job_id)
    local deadline = redis.call('HGET', leases_key, job_id)
    if not job then
      redis.call('ZREM', due_key, job_id)
    elseif due <= now or not deadline then
      -- a live lease is never released early: only once its deadline has passed
      if deadline and tonumber(deadline) <= now then
        count_lost_delivery(failures_key, job_id, redis.call('HGET', owners_key, job_id))
        redis.call('HDEL', owners_key, job_id)
        redis.call('HDEL', leases_key, job_id)
      end
      redis.call('ZADD', due_key, math.max(due, now) + tonumber(ARGV[2]), job_id)
      released[#released + 1] = job
      released[#released + 1] = tostring(math.max(due, now))
    end
  end
end

local upto = horizon
if ARGV[5] then
  local recent = now - tonumber(ARGV[5])
  release(redis.call('ZRANGEBYSCORE', due_key, recent, horizon, 'WITHSCORES', 'LIMIT', 0,
    limit))
  upto = '(' .. recent
end
local left = limit - #released / 2
if left > 0 then
  release(redis.call('ZRANGEBYSCORE', due_key, '-inf', upto, 'WITHSCORES', 'LIMIT', 0, left))
end
return released
