-- Store a batch of events and queue ONE job that processes those something listens to, in
-- the same atomic step: an event answered "stored" always has its job (or, when nothing
-- listened, needs none). Used by lua/ingest_events.lua and lua/finish_run.lua.
--
-- k:      {events, archive, jobs, due, by_run, triggers, wild, built}: the fixed keys
-- key_at: index in KEYS before event 1's keys; event i has five keys from key_at + 5 (i - 1):
--         event record, dedupe (only read when its dedupe flag is set), pause scan set,
--         pause index paths, job tombstone (of job "event:<internal id>")
-- arg_at: index in ARGV before event 1's values; event i has five from arg_at + 5 (i - 1):
--         internal id, dedupe flag ("1": dedupe on the dedupe key), record JSON, event name,
--         "1" when it must be processed whatever the indexes say (invoke, an invoke's finish)
-- n:      number of events; now: received_at (ms); ttl: dedupe TTL (ms); send_by: the job's
--         (when the tick sends it if no message did)
-- first:  optional; true: name the job after event 1 ("event:<its internal id>", the caller
--         could so build its broker message beforehand) when event 1 is stored by this call,
--         even if it is one nothing listens to; otherwise (and by default) the job is named
--         after the first event it processes.
--
-- Returns the answers {code, internal id, ...} ("stored", "idle": stored, nothing listens,
-- "duplicate": the dedupe key or the internal id was seen, nothing written), the job id
-- ("" when no job was made) and whether that job was named after event 1.

-- Needs archive.lua and enqueue.lua included before it (includes do not nest).

local function glob_matches(pattern, name)
  -- Trigger names with `*` wildcards (app.registry.event_matches); `?` and `[` (fnmatch's
  -- other forms) are rare: they count as matching, which costs a job, never an event.
  if string.find(pattern, '[%?%[]') then
    return true
  end
  local lua_pattern = '^' .. string.gsub(pattern, '[%^%$%(%)%%%.%]%+%-]', '%%%0') .. '$'
  lua_pattern = string.gsub(lua_pattern, '%*', '.*')
  return string.find(name, lua_pattern) ~= nil
end

local function listened(k, name, scan_key, paths_key)
  if redis.call('EXISTS', k.built) == 0 then
    return true -- no trigger index yet (a store older than it): process everything
  end
  if redis.call('SISMEMBER', k.triggers, name) == 1 then
    return true
  end
  if redis.call('EXISTS', scan_key) == 1 or redis.call('EXISTS', paths_key) == 1 then
    return true -- a pending wait/cancel pause on this name
  end
  for _, pattern in ipairs(redis.call('SMEMBERS', k.wild)) do
    if glob_matches(pattern, name) then
      return true
    end
  end
  return false
end

local function ingest(k, key_at, arg_at, n, now, ttl, send_by, first)
  local answers, queued = {}, {}
  local first_new = false -- event 1 stored by this call
  -- Whether anything listens, asked once per event name (a batch mostly repeats a few names;
  -- nothing here changes the indexes, so the answer holds for the whole call).
  local heard = {}
  for i = 1, n do
    local kk, a = key_at + 5 * (i - 1), arg_at + 5 * (i - 1)
    local event_key, dedupe_key = KEYS[kk + 1], KEYS[kk + 2]
    local internal_id, dedupe = ARGV[a + 1], ARGV[a + 2]
    local first = dedupe == '1' and redis.call('GET', dedupe_key)
    if first then
      answers[#answers + 1] = 'duplicate'
      answers[#answers + 1] = first
    elseif redis.call('EXISTS', event_key) == 1 then
      answers[#answers + 1] = 'duplicate'
      answers[#answers + 1] = internal_id
    else
      if dedupe == '1' then
        redis.call('SET', dedupe_key, internal_id, 'PX', ttl)
      end
      redis.call('SET', event_key, ARGV[a + 3])
      redis.call('ZADD', k.events, now, internal_id)
      first_new = first_new or i == 1
      queue_archive(k.archive, internal_id, now)
      local name = ARGV[a + 4]
      if ARGV[a + 5] ~= '1' and heard[name] == nil then
        heard[name] = listened(k, name, KEYS[kk + 3], KEYS[kk + 4])
      end
      if ARGV[a + 5] == '1' or heard[name] then
        queued[#queued + 1] = {internal_id, KEYS[kk + 5]}
        answers[#answers + 1] = 'stored'
      else
        answers[#answers + 1] = 'idle'
      end
      answers[#answers + 1] = internal_id
    end
  end
  if #queued == 0 then
    return answers, '', false
  end
  local ids = {}
  for i, item in ipairs(queued) do
    ids[i] = item[1]
  end
  local job_id, tombstone = 'event:' .. ids[1], queued[1][2]
  local named = first == true and first_new
  if named then
    job_id, tombstone = 'event:' .. ARGV[arg_at + 1], KEYS[key_at + 5]
  end
  -- due_at: when it became due (app/state/jobs.py job_record), for the oldest waiting job's age
  local job = cjson.encode({id = job_id, kind = 'event', event_id = ids[1], event_ids = ids,
    due_at = tonumber(now)})
  if enqueue(k.jobs, k.due, k.by_run, tombstone, job_id, job, send_by, '') ~= 1 then
    return answers, '', false
  end
  return answers, job_id, named
end
