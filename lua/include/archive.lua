-- Queue a finished run or a stored event for the archiver (lua/history_claim.lua takes it
-- from there). The score is when it may be claimed; a repeat keeps the first entry.
local function queue_archive(queue_key, id, now)
  redis.call('ZADD', queue_key, 'NX', now, id)
end
