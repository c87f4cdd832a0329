--[[ delete_pause: delete a pause and its index entries.

KEYS[1]  pause          string  <p>:pause:<id>
KEYS[2]  pause expiry   zset    <p>:pauses:expiry
KEYS[3]  pause index    set     <p>:pidx:<event>:<path>:<value> or <p>:pscan:<event>
KEYS[4]  index paths    hash    <p>:pidx-paths:<event>
KEYS[5]  correlations   hash    <p>:pcorr
KEYS[6]  run pauses     set     <p>:{<run>}:pauses

ARGV[1]  pause id
ARGV[2]  pause JSON as the caller read it (the index keys were derived from it)
ARGV[3]  index mode: "idx", "scan" or ""
ARGV[4]  index path ("" unless mode idx)
ARGV[5]  correlation id, "" for none

Returns:
  1   deleted
  0   no such pause
  -1  the stored pause differs from ARGV[2]; nothing written (read again and retry)
]]

-- @include "drop_pause.lua"

local current = redis.call('GET', KEYS[1])
if not current then
  return 0
end
if current ~= ARGV[2] then
  return -1
end
local keys = {pause = KEYS[1], expiry = KEYS[2], index = KEYS[3], paths = KEYS[4],
  correlations = KEYS[5], run_pauses = KEYS[6]}
drop_pause(keys, ARGV[1], ARGV[3], ARGV[4], ARGV[5])
return 1
