--[[ flow_rate_limit: may this schedule start a run of a rate-limited function? (GCRA)

KEYS[1]  limiter  string  <p>:flow:rl:<fn id>:<key hash>     theoretical arrival time (TAT), ms
KEYS[2]  seen     string  <p>:flow:rl-seen:<fn id>:<event>   this schedule was admitted (PX)

ARGV[1]  now, ms since epoch
ARGV[2]  period, ms (> 0)
ARGV[3]  limit: runs per period (>= 1)
ARGV[4]  burst: runs admitted back to back beyond the first (Inngest: floor(limit / 10))
ARGV[5]  seen TTL, ms: how long a repeat of the same schedule is answered "admitted"

The GCRA of Inngest's ratelimit.lua (the `throttled` library's): emission interval
T = period / limit, tolerance = T * (burst + 1). When idle, burst + 1 runs are admitted back to
back, then one every T. A stored TAT outside [now - period, now + period + tolerance] is
clamped (and the clamped value stored), so a corrupted value cannot lock a function out.

Returns {code, retry_at}:
  {1, 0}          admitted: TAT advanced by T (PX until it is reached), seen key written
  {2, 0}          this schedule was admitted before (seen key exists); nothing written
  {0, retry_at}   limited: the next run would be admitted at retry_at (ms); nothing written
                  (but a clamped TAT)
]]

local limiter_key, seen_key = KEYS[1], KEYS[2]
local now = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local burst = tonumber(ARGV[4])

if redis.call('EXISTS', seen_key) == 1 then
  return {2, 0}
end

local emission = period / limit
local tolerance = emission * (burst + 1)

local stored = tonumber(redis.call('GET', limiter_key) or '')
local tat = stored or now
if tat > now + period + tolerance then
  tat = now + period + tolerance
elseif tat < now - period then
  tat = now
end
if stored and tat ~= stored then
  redis.call('SET', limiter_key, string.format('%.0f', tat), 'KEEPTTL')
end

local new_tat = math.max(tat, now) + emission
local allow_at = new_tat - tolerance
if allow_at > now then
  return {0, string.format('%.0f', math.ceil(allow_at))}
end

new_tat = math.floor(new_tat + 0.5)
redis.call('SET', limiter_key, string.format('%.0f', new_tat), 'PX',
  string.format('%.0f', math.max(1, new_tat - now)))
redis.call('SET', seen_key, ARGV[1], 'PX', ARGV[5])
return {1, 0}
