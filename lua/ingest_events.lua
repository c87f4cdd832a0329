--[[ ingest_events: store a request's events and queue the job that processes them, at once.

KEYS[1]  events          zset    <p>:events                   internal id by received_at
KEYS[2]  archive queue   zset    <p>:history:events           internal id by received_at
KEYS[3]  jobs            hash    <p>:jobs
KEYS[4]  jobs due        zset    <p>:jobs:due
KEYS[5]  jobs by run     zset    <p>:jobs:by-run              (not written: event jobs have no run)
KEYS[6]  trigger names   set     <p>:triggers                 exact trigger event names
KEYS[7]  trigger globs   set     <p>:triggers:wild            trigger names with wildcards
KEYS[8]  index built     string  <p>:triggers:built           set once save_app built them
KEYS[9]  counter         hash    <p>:metric:events_received_total   field "" += ARGV[5]
then, for event i (i = 1..N), five keys:
         event           string  <p>:event:<internal id>
         dedupe          string  <p>:event-dedupe:<user id> or <p>:engine-event-dedupe:<id>
                                 (any key when the event has no id: not touched)
         pause scan      set     <p>:pscan:<event name>
         pause paths     hash    <p>:pidx-paths:<event name>
         job tombstone   string  <p>:job-done:event:<internal id>

ARGV[1]  now (received_at), ms since epoch
ARGV[2]  dedupe TTL, ms
ARGV[3]  the job's send-by (when the tick sends it if no message did), ms since epoch
ARGV[4]  N, number of events
ARGV[5]  how many to add to the events-received counter (0: none; the API counts requests'
         events, duplicates included, so the count is not part of a repeat's answer)
then, for event i, five values: internal id, "1" to dedupe on its dedupe key else "0",
         event record JSON {"internal_id", "received_at", "event"}, event name, "1" when it
         must be processed whatever the indexes say else "0"

An event is stored once: a dedupe key seen within the TTL, or an internal id already stored,
answers the first event's internal id and writes nothing. Every new event is stored (history,
replay); those that a trigger, a pending pause or their "must" flag listens to are processed
by one job, "event:<first such internal id>", created in this same call. So "duplicate" always
means the first copy's job was made with it (or nothing listened); a repeated call (a lost
reply re-sent) answers the same ids and writes nothing.

Returns {job id or "", code 1, internal id 1, code 2, internal id 2, ...}, code "stored"
(queued), "idle" (stored, nothing listens) or "duplicate".
]]

-- @include "archive.lua"
-- @include "enqueue.lua"
-- @include "ingest.lua"

local k = {events = KEYS[1], archive = KEYS[2], jobs = KEYS[3], due = KEYS[4], by_run = KEYS[5],
  triggers = KEYS[6], wild = KEYS[7], built = KEYS[8]}
if ARGV[5] ~= '0' then
  redis.call('HINCRBY', KEYS[9], '', ARGV[5])
end
local answers, job_id = ingest(k, 9, 5, tonumber(ARGV[4]), ARGV[1], ARGV[2], ARGV[3])
table.insert(answers, 1, job_id)
return answers
