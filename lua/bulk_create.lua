--[[ bulk_create: record a new bulk operation (state running) and list it.

Safe to repeat: an operation that exists is left as it is.

KEYS[1]  bulk    hash  <p>:bulk:<id>
KEYS[2]  bulks   zset  <p>:bulks            bulk id by creation time

ARGV[1]  bulk id
ARGV[2]  now, ms
ARGV[3]  spec (JSON)
ARGV[4]  estimate (the dry-run count when it was started)

Returns 1 if created, 0 if it existed.
]]

if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1],
  'id', ARGV[1], 'state', 'running', 'spec', ARGV[3], 'estimate', ARGV[4],
  'matched', 0, 'done', 0, 'failed', 0, 'skipped', 0, 'cursor', '',
  'created_at', ARGV[2], 'updated_at', ARGV[2], 'finished_at', '')
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
