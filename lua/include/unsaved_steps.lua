-- In-process steps that ran before a job stops (lua/suspend.lua, lua/finish_run.lua): their
-- memos stored with the stop, first write wins, as lua/save_step.lua stores one.
--
-- Step s of n takes five values in ARGV from at + 5 (s - 1): hashed step id, memo JSON,
-- history info JSON, duration bucket, seconds.

-- Needs memoize.lua, merge_history.lua and observe_step.lua included before it (includes do
-- not nest).

-- The ARGV offsets of the steps with no memo yet; nil when one already has another memo
-- (another execution got there first and carries the run on). Reads only: call it before
-- anything is written.
local function unsaved_steps(steps_key, at, n)
  local offsets = {}
  for s = 1, n do
    local a = at + 5 * (s - 1)
    local existing = redis.call('HGET', steps_key, ARGV[a + 1])
    if not existing then
      offsets[#offsets + 1] = a
    elseif existing ~= ARGV[a + 2] then
      return nil
    end
  end
  return offsets
end

-- Store the steps `unsaved_steps` picked: memo (and the run's stack and pending set), history
-- record, duration under `label`. k: {meta, steps, stack, pending, history, durations}.
local function save_unsaved(k, offsets, label)
  for _, a in ipairs(offsets) do
    memoize(k.meta, k.steps, k.stack, k.pending, ARGV[a + 1], ARGV[a + 2])
    merge_history(k.history, ARGV[a + 1], ARGV[a + 3])
    observe_step(k.durations, label, ARGV[a + 4], ARGV[a + 5])
  end
end
