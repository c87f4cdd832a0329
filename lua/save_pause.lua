--[[ save_pause: insert a pause if absent and index it.

KEYS[1]  pause          string  <p>:pause:<id>                 Pause JSON
KEYS[2]  pause expiry   zset    <p>:pauses:expiry              pause id by expires_at
KEYS[3]  pause index    set     <p>:pidx:<event>:<path>:<value> (mode idx)
                                or <p>:pscan:<event> (mode scan)
KEYS[4]  index paths    hash    <p>:pidx-paths:<event>         path -> pauses using it
KEYS[5]  correlations   hash    <p>:pcorr                      correlation id -> pause id
KEYS[6]  run pauses     set     <p>:{<run>}:pauses
KEYS[7]  run meta       hash    <p>:{<run>}:run

ARGV[1]  pause id
ARGV[2]  pause JSON
ARGV[3]  expires_at, ms since epoch
ARGV[4]  index mode: "idx" (indexed by path/value), "scan" (unindexed, in the event's scan
         set) or "" (no event name: not indexed by event)
ARGV[5]  index path ("" unless mode idx)
ARGV[6]  correlation id, "" for none (HSETNX: the first pause keeps a correlation id)
ARGV[7]  correlation mode (optional): "" as above; "fail": refuse (-2) while another pending
         pause holds the correlation id (a signal name); "replace": take it over (the other
         pause stays pending until its timeout, unreachable by that id)

Returns:
  1   created
  0   the pause already exists; nothing written (replays are harmless)
  -1  the run is ended or missing; nothing written
  -2  mode "fail" and another pending pause holds the correlation id; nothing written
]]

-- @include "run_status.lua"
-- @include "save_pause.lua"

local status = redis.call('HGET', KEYS[7], 'status')
if not status or is_ended(status) then
  return -1
end
local keys = {pause = KEYS[1], expiry = KEYS[2], index = KEYS[3], paths = KEYS[4],
  correlations = KEYS[5], run_pauses = KEYS[6]}
return save_pause(keys, ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7] or '')
