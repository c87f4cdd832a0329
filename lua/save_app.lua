--[[ save_app: atomically replace an app's functions.

KEYS[1]  apps               hash    <p>:apps               app id -> app record JSON
KEYS[2]  functions          hash    <p>:functions          function id -> FunctionConfig JSON
KEYS[3]  app functions      set     <p>:app-fns:<app id>   the app's function ids
KEYS[4]  registry version   string  <p>:registry-version   integer

ARGV[1]          app id
ARGV[2]          app record JSON (has a "checksum" field, string)
ARGV[3]          checksum of the app's url and function configs
ARGV[4..]        pairs: function id, FunctionConfig JSON

When the stored record's checksum equals ARGV[3] only the record is rewritten (its sync time).
Otherwise the app's functions are replaced (ids no longer present are deleted) and the
registry version is bumped.
Returns 1 if the functions changed, 0 if not.
]]

local apps_key, functions_key, app_fns_key, version_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local app_id, record, checksum = ARGV[1], ARGV[2], ARGV[3]

local existing = redis.call('HGET', apps_key, app_id)
redis.call('HSET', apps_key, app_id, record)
if existing and cjson.decode(existing)['checksum'] == checksum then
  return 0
end

local keep = {}
for i = 4, #ARGV, 2 do
  keep[ARGV[i]] = true
end
for _, fn_id in ipairs(redis.call('SMEMBERS', app_fns_key)) do
  if not keep[fn_id] then
    redis.call('HDEL', functions_key, fn_id)
    redis.call('SREM', app_fns_key, fn_id)
  end
end
for i = 4, #ARGV, 2 do
  redis.call('HSET', functions_key, ARGV[i], ARGV[i + 1])
  redis.call('SADD', app_fns_key, ARGV[i])
end
redis.call('INCR', version_key)
return 1
