-- Store a step's memo the first time: HSET it, push the step on the stack, drop it from the
-- pending set; when that empties the pending set, clear the run's `die` flag (parallelism over).
-- The caller has checked that the step has no memo yet. Returns the pending count after it.
local function memoize(meta_key, steps_key, stack_key, pending_key, step, memo)
  redis.call('HSET', steps_key, step, memo)
  redis.call('RPUSH', stack_key, step)
  local removed = redis.call('SREM', pending_key, step)
  local pending = redis.call('SCARD', pending_key)
  if removed == 1 and pending == 0 then
    redis.call('HSET', meta_key, 'die', '0')
  end
  return pending
end
