-- Insert a pause if absent and index it (lua/save_pause.lua, lua/suspend.lua); the caller
-- checks its run is live. `keys`: pause, expiry, index, paths, correlations, run_pauses.
-- `corr_mode`: "" (HSETNX: the first pause keeps a correlation id), "fail" (refuse while
-- another pending pause holds it) or "replace" (take it over).
-- Returns 1 created, 0 the pause exists (nothing written), -2 refused (mode "fail"; nothing
-- written).
local function save_pause(keys, pause_id, raw, expires_at, mode, index_path, corr, corr_mode)
  if redis.call('EXISTS', keys.pause) == 1 then
    return 0
  end
  if corr ~= '' and corr_mode == 'fail' then
    -- A pause is pending while it is in the expiry set (every deletion removes it from there).
    local holder = redis.call('HGET', keys.correlations, corr)
    if holder and holder ~= pause_id and redis.call('ZSCORE', keys.expiry, holder) then
      return -2
    end
  end
  redis.call('SET', keys.pause, raw)
  redis.call('ZADD', keys.expiry, expires_at, pause_id)
  redis.call('SADD', keys.run_pauses, pause_id)
  if mode == 'idx' then
    redis.call('SADD', keys.index, pause_id)
    redis.call('HINCRBY', keys.paths, index_path, 1)
  elseif mode == 'scan' then
    redis.call('SADD', keys.index, pause_id)
  end
  if corr ~= '' then
    if corr_mode == '' then
      redis.call('HSETNX', keys.correlations, corr, pause_id)
    else
      redis.call('HSET', keys.correlations, corr, pause_id)
    end
  end
  return 1
end
