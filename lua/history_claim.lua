--[[ history_claim: take a batch of runs (or events) waiting for the archiver, under a lease.

Ids due by `now` are leased to the caller: their score moves to now + lease, so no other
archiver takes them until the lease runs out (an archiver killed mid-batch loses nothing: its
batch comes back then). The claim is remembered under the caller's token for the lease, so a
repeated call (a lost reply re-sent) answers the same ids.

KEYS[1]  queue     zset    <p>:history:runs or <p>:history:events   id by claimable time
KEYS[2]  claim     string  <p>:history:claim:<token>                JSON list of ids (PX)

ARGV[1]  now, ms since epoch
ARGV[2]  lease, ms
ARGV[3]  at most this many ids

Returns the claimed ids, oldest first (an empty list when none is due).
]]

local queue_key, claim_key = KEYS[1], KEYS[2]
local now, lease = tonumber(ARGV[1]), tonumber(ARGV[2])

local held = redis.call('GET', claim_key)
if held then
  return cjson.decode(held)
end
local ids = redis.call('ZRANGEBYSCORE', queue_key, '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  redis.call('ZADD', queue_key, 'XX', now + lease, id)
end
if #ids > 0 then
  redis.call('SET', claim_key, cjson.encode(ids), 'PX', lease)
end
return ids
