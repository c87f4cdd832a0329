-- Delete a pause and every index entry pointing at it.
--   keys: {pause, expiry, index, paths, correlations, run_pauses} (see the callers' headers)
--   mode: 'idx' (indexed under `index_path` in `index`), 'scan' (in the event's scan set
--   `index`) or '' (no event index); corr: correlation id or ''.
local function drop_pause(keys, pause_id, mode, index_path, corr)
  redis.call('DEL', keys.pause)
  redis.call('ZREM', keys.expiry, pause_id)
  redis.call('SREM', keys.run_pauses, pause_id)
  if mode == 'idx' then
    if redis.call('SREM', keys.index, pause_id) == 1 then
      if redis.call('HINCRBY', keys.paths, index_path, -1) <= 0 then
        redis.call('HDEL', keys.paths, index_path)
      end
    end
  elseif mode == 'scan' then
    redis.call('SREM', keys.index, pause_id)
  end
  if corr ~= '' and redis.call('HGET', keys.correlations, corr) == pause_id then
    redis.call('HDEL', keys.correlations, corr)
  end
end
