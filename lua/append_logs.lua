--[[ append_logs: store the `ctx.logger` lines one call of a run's function logged, bounded.

KEYS[1]  run logs     list    <p>:{<run>}:logs        log line JSON, oldest first
KEYS[2]  logs meta    hash    <p>:{<run>}:logs-meta   batch id -> lines stored by that batch;
                                                      "dropped" -> lines refused over the cap

ARGV[1]  batch id (one per driver call: a repeat of this call stores nothing again)
ARGV[2]  max lines kept for the run
ARGV[3..] the lines (JSON text, each already cut to size by the caller)

A run keeps its first ARGV[2] lines; later ones are only counted under "dropped" (the UI says
how many). Both keys go when the run is dropped from Redis (history_drop_run.lua deletes them
with the run's other keys).
Returns the number of lines this batch stored (a repeat answers the first call's number).
]]

local logs_key, meta_key = KEYS[1], KEYS[2]
local batch, cap = ARGV[1], tonumber(ARGV[2])

local seen = redis.call('HGET', meta_key, batch)
if seen then
  return tonumber(seen)
end
local room = cap - redis.call('LLEN', logs_key)
local stored = 0
for i = 3, #ARGV do
  if stored < room then
    redis.call('RPUSH', logs_key, ARGV[i])
    stored = stored + 1
  end
end
local dropped = (#ARGV - 2) - stored
if dropped > 0 then
  redis.call('HINCRBY', meta_key, 'dropped', dropped)
end
redis.call('HSET', meta_key, batch, stored)
return stored
