-- A Queued run goes Running (mark_started.lua, start_run.lua): started_at written once (kept
-- if already set), the run moved from the Queued to the Running indexes (its own and its
-- function's), the start counted for its function. The caller checked it is Queued.
local function start_queued(meta_key, queued_key, fn_queued_key, running_key, fn_running_key,
                            counter_key, function_id, now)
  local run_id = redis.call('HGET', meta_key, 'run_id')
  local created_at = redis.call('HGET', meta_key, 'created_at')
  local started_at = redis.call('HGET', meta_key, 'started_at')
  if not started_at or started_at == '' then
    redis.call('HSET', meta_key, 'started_at', now)
  end
  redis.call('HSET', meta_key, 'status', 'Running')
  redis.call('ZREM', queued_key, run_id)
  redis.call('ZREM', fn_queued_key, run_id)
  redis.call('ZADD', running_key, created_at, run_id)
  redis.call('ZADD', fn_running_key, created_at, run_id)
  redis.call('HINCRBY', counter_key, function_id, 1)
end
