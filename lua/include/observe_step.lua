-- Count a step's duration in the step duration histogram (<p>:metric:step_duration_seconds,
-- fields "<function>|<bucket>", "<function>|count", "<function>|sum"), once, by the call that
-- created its memo. label "" (no function) or bucket "" observes nothing.
local function observe_step(durations_key, label, bucket, seconds)
  if label ~= '' and bucket ~= '' then
    redis.call('HINCRBY', durations_key, label .. '|' .. bucket, 1)
    redis.call('HINCRBY', durations_key, label .. '|count', 1)
    redis.call('HINCRBYFLOAT', durations_key, label .. '|sum', seconds)
  end
end
