--[[ record_step: merge information into a step's history record (no memo).

KEYS[1]  run meta  hash  <p>:{<run>}:run
KEYS[2]  history   hash  <p>:{<run>}:history   hashed step id -> history record

ARGV[1]  hashed step id
ARGV[2]  info: JSON object of field -> JSON text

Record fields are overwritten by the info's; `order` is set on first sight (see
include/merge_history.lua). Returns 1, or 0 if the run does not exist (nothing written).
]]

-- @include "merge_history.lua"

if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
merge_history(KEYS[2], ARGV[1], ARGV[2])
return 1
