-- Merge `info` into a step's history record. A record is a JSON object whose values are JSON
-- texts (strings), so cjson only ever re-encodes strings and every value round-trips exactly.
-- Fields of `info` overwrite the record's; `order` is set once, on first sight, to the number
-- of records the run had before. `info` "" merges nothing.
local function merge_history(history_key, step, info)
  if info == '' then
    return
  end
  local existing = redis.call('HGET', history_key, step)
  local record = {}
  local order
  if existing then
    record = cjson.decode(existing)
    order = record['order']
  else
    order = tostring(redis.call('HLEN', history_key))
  end
  for field, value in pairs(cjson.decode(info)) do
    record[field] = value
  end
  record['order'] = order
  redis.call('HSET', history_key, step, cjson.encode(record))
end
