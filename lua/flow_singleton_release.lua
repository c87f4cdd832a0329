--[[ flow_singleton_release: a singleton run ended (or was never created): free its lock.

KEYS[1]  lock     hash    <p>:flow:singleton:<fn id>:<key hash>   (named by the run ref)
KEYS[2]  run ref  string  <p>:flow:singleton-run:<run id>

ARGV[1]  run id

Returns:
  1  the lock named this run and is gone
  0  the lock names another run (or none): left alone; the ref is dropped either way
]]

local lock_key, ref_key = KEYS[1], KEYS[2]
redis.call('DEL', ref_key)
if redis.call('HGET', lock_key, 'run_id') == ARGV[1] then
  redis.call('DEL', lock_key)
  return 1
end
return 0
