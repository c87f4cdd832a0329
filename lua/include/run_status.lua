-- Run statuses as stored in the run meta `status` field (app.models.RunStatus values).
local function is_ended(status)
  return status == 'Completed' or status == 'Failed' or status == 'Cancelled'
end
