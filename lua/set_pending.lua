--[[ set_pending: replace a run's set of pending parallel steps.

KEYS[1]  run meta  hash  <p>:{<run>}:run       die
KEYS[2]  pending   set   <p>:{<run>}:pending

ARGV[1..n]  hashed step ids (none: just empty the set)

With at least one step, also sets `die` (disable immediate execution) to 1.
Returns the size of the new pending set, or -1 if the run does not exist (nothing written).
]]

if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
redis.call('DEL', KEYS[2])
if #ARGV > 0 then
  for i = 1, #ARGV do
    redis.call('SADD', KEYS[2], ARGV[i])
  end
  redis.call('HSET', KEYS[1], 'die', '1')
end
return #ARGV
