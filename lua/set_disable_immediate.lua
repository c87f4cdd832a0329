--[[ set_disable_immediate: set a run's `die` flag (disable immediate execution).

KEYS[1]  run meta  hash  <p>:{<run>}:run

ARGV[1]  "1" or "0"

Returns 1, or 0 if the run does not exist (nothing written).
]]

if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'die', ARGV[1])
return 1
