--[[ history_archived: the history store has committed these runs (or events); take them off
the archiver's queue and schedule Redis to drop them after the hot window.

Called only after the database commit, so an archiver killed before it leaves the ids queued
(claimed again when the lease runs out, and upserted again: harmless). Safe to repeat: an id
already scheduled keeps its first drop time.

KEYS[1]  queue     zset    <p>:history:runs or <p>:history:events
KEYS[2]  drops     zset    <p>:history:drop-runs or <p>:history:drop-events   id by drop time
KEYS[3]  claim     string  <p>:history:claim:<token>        (deleted: the claim is done)

ARGV[1]  drop time, ms since epoch (now + hot window)
ARGV[2..] ids

Returns the number of ids given, each now off the queue and scheduled for dropping.
]]

local queue_key, drops_key = KEYS[1], KEYS[2]
for i = 2, #ARGV do
  redis.call('ZREM', queue_key, ARGV[i])
  redis.call('ZADD', drops_key, 'NX', ARGV[1], ARGV[i])
end
redis.call('DEL', KEYS[3])
return #ARGV - 1
