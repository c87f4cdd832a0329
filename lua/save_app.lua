--[[ save_app: atomically register an app's functions.

KEYS[1]  apps               hash    <p>:apps               app id -> app record JSON
KEYS[2]  functions          hash    <p>:functions          function id -> FunctionConfig JSON
KEYS[3]  app functions      set     <p>:app-fns:<app id>   the app's function ids
KEYS[4]  registry version   string  <p>:registry-version   sync id of the last change
KEYS[5]  last syncs         hash    <p>:app-syncs          app id -> "<sync id> <0|1>"
KEYS[6]  trigger names      set     <p>:triggers           exact trigger event names
KEYS[7]  trigger globs      set     <p>:triggers:wild      trigger event names with wildcards
KEYS[8]  index built        string  <p>:triggers:built     "1" once the two sets are built

ARGV[1]          app id
ARGV[2]          app record JSON (fields "checksum", string, and "url", string or null)
ARGV[3]          checksum of the app's url and function configs
ARGV[4]          sync id, unique per registration
ARGV[5]          "1": take over functions other apps own and apps served in-process (the
                 engine publishing its own in-process functions); "0": refuse them
                 (registrations over HTTP)
ARGV[6..]        pairs: function id, FunctionConfig JSON (with "app_id")

The ownership checks and the write are one step, so two apps registering the same function id
at once cannot both get it, and one app registered twice at once ends up wholly one or the
other. When the stored record's checksum equals ARGV[3] only the record is rewritten (its sync
time); otherwise the app's functions are replaced (ids no longer present are deleted) and the
registry version is set to the sync id. Processes cache the registry under that version, so it
must never take a value again: a counter would start over after Redis lost its data (a flush,
a restart without persistence) and a process that cached the old functions under the same
number would keep calling apps at their old URLs.

The trigger index (KEYS[6], KEYS[7]: every function's trigger event names, which
lua/ingest_events.lua reads to store events nothing listens to without queueing them) is
rebuilt from all functions whenever they change, and once on a store that has none yet.

Returns 1 if the functions changed, 0 if not; nothing is written and it returns
  {"function", <function id>, <owner app id>}  when another app owns one of the functions,
  {"in_process", <app id>}                     when the app is served in-process.
A repeat with the same sync id (a lost reply re-sent) answers the first call's 1 or 0.
]]

local apps_key, functions_key, app_fns_key, version_key, syncs_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local triggers_key, wild_key, built_key = KEYS[6], KEYS[7], KEYS[8]

local function rebuild_triggers()
  redis.call('DEL', triggers_key, wild_key)
  for _, raw in ipairs(redis.call('HVALS', functions_key)) do
    local ok, config = pcall(cjson.decode, raw)
    if ok and type(config) == 'table' and type(config['triggers']) == 'table' then
      for _, trigger in ipairs(config['triggers']) do
        local name = type(trigger) == 'table' and trigger['event'] or nil
        if type(name) == 'string' then
          if string.find(name, '[%*%?%[]') then
            redis.call('SADD', wild_key, name)
          else
            redis.call('SADD', triggers_key, name)
          end
        end
      end
    end
  end
  redis.call('SET', built_key, '1')
end
local app_id, record, checksum, sync_id, takeover = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

local last = redis.call('HGET', syncs_key, app_id)
if last then
  local last_id, last_modified = string.match(last, '^(%S+) (%d)$')
  if last_id == sync_id then
    return tonumber(last_modified)
  end
end

local existing = redis.call('HGET', apps_key, app_id)
local existing_record = existing and cjson.decode(existing) or nil

if takeover ~= '1' then
  if existing_record and existing_record['url'] == cjson.null then
    return {'in_process', app_id}
  end
  for i = 6, #ARGV, 2 do
    local current = redis.call('HGET', functions_key, ARGV[i])
    if current then
      local owner = cjson.decode(current)['app_id']
      if owner ~= app_id then
        return {'function', ARGV[i], tostring(owner)}
      end
    end
  end
end

redis.call('HSET', apps_key, app_id, record)
local modified = 1
if existing_record and existing_record['checksum'] == checksum then
  modified = 0
else
  local keep = {}
  for i = 6, #ARGV, 2 do
    keep[ARGV[i]] = true
  end
  for _, fn_id in ipairs(redis.call('SMEMBERS', app_fns_key)) do
    if not keep[fn_id] then
      -- A function taken over by another app (ARGV[5]) is no longer this app's to delete.
      local current = redis.call('HGET', functions_key, fn_id)
      if current and cjson.decode(current)['app_id'] == app_id then
        redis.call('HDEL', functions_key, fn_id)
      end
      redis.call('SREM', app_fns_key, fn_id)
    end
  end
  for i = 6, #ARGV, 2 do
    redis.call('HSET', functions_key, ARGV[i], ARGV[i + 1])
    redis.call('SADD', app_fns_key, ARGV[i])
  end
  redis.call('SET', version_key, sync_id)
end
if modified == 1 or redis.call('EXISTS', built_key) == 0 then
  rebuild_triggers()
end
redis.call('HSET', syncs_key, app_id, sync_id .. ' ' .. modified)
return modified
