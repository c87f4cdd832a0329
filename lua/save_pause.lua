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

local pause_key, expiry_key, index_key, paths_key, corr_key, run_pauses_key, meta_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local pause_id, mode, index_path, corr = ARGV[1], ARGV[4], ARGV[5], ARGV[6]
local corr_mode = ARGV[7] or ''

local status = redis.call('HGET', meta_key, 'status')
if not status or is_ended(status) then
  return -1
end
if redis.call('EXISTS', pause_key) == 1 then
  return 0
end
if corr ~= '' and corr_mode == 'fail' then
  -- A pause is pending while it is in the expiry set (every deletion removes it from there).
  local holder = redis.call('HGET', corr_key, corr)
  if holder and holder ~= pause_id and redis.call('ZSCORE', expiry_key, holder) then
    return -2
  end
end
redis.call('SET', pause_key, ARGV[2])
redis.call('ZADD', expiry_key, ARGV[3], pause_id)
redis.call('SADD', run_pauses_key, pause_id)
if mode == 'idx' then
  redis.call('SADD', index_key, pause_id)
  redis.call('HINCRBY', paths_key, index_path, 1)
elseif mode == 'scan' then
  redis.call('SADD', index_key, pause_id)
end
if corr ~= '' then
  if corr_mode == '' then
    redis.call('HSETNX', corr_key, corr, pause_id)
  else
    redis.call('HSET', corr_key, corr, pause_id)
  end
end
return 1
