--[[ ingest_events: store a request's events and queue the job that processes them, at once,
with the job's broker message.

KEYS[1]  events          zset    <p>:events                   internal id by received_at
KEYS[2]  archive queue   zset    <p>:history:events           internal id by received_at
KEYS[3]  jobs            hash    <p>:jobs
KEYS[4]  jobs due        zset    <p>:jobs:due
KEYS[5]  jobs by run     zset    <p>:jobs:by-run              (not written: event jobs have no run)
KEYS[6]  trigger names   set     <p>:triggers                 exact trigger event names
KEYS[7]  trigger globs   set     <p>:triggers:wild            trigger names with wildcards
KEYS[8]  index built     string  <p>:triggers:built           set once save_app built them
KEYS[9]  counter         hash    <p>:metric:events_received_total   field "" += ARGV[5]
KEYS[10] broker list     list    the Celery queue's list ARGV[7] goes to (kombu's Redis
                                 transport: the queue name, then its priority step)
then, for event i (i = 1..N), five keys:
         event           string  <p>:event:<internal id>
         dedupe          string  <p>:event-dedupe:<user id> or <p>:engine-event-dedupe:<id>
                                 (any key when the event has no id: not touched)
         pause scan      set     <p>:pscan:<event name>
         pause paths     hash    <p>:pidx-paths:<event name>
         job tombstone   string  <p>:job-done:event:<internal id>
then, for event i, KEYS[10 + 5N + i]: its name's recent-events index (zset
         <p>:recent-events:<event name>; only with ARGV[8] > 0)

ARGV[1]  now (received_at), ms since epoch
ARGV[2]  dedupe TTL, ms
ARGV[3]  the job's send-by (when the tick sends it if no message did), ms since epoch
ARGV[4]  N, number of events
ARGV[5]  how many to add to the events-received counter (0: none; the API counts requests'
         events, duplicates included, so the count is not part of a repeat's answer)
ARGV[6]  "1": name the job "event:<event 1's internal id>" when event 1 is stored by this call
         (ARGV[7] carries that job id); "0": name it after the first event it processes
ARGV[7]  the job's broker message, as kombu's Redis transport stores it (built by app/queue.py
         with Celery's and kombu's own code), LPUSHed onto KEYS[10] when the job is made and
         named after event 1; "" for none (the caller sends the job itself)
ARGV[8]  recent-events window, ms (0: index nothing): a new event is added to its name's index
         (app/lookback.py), entries older than the window or beyond the newest ARGV[9] dropped
ARGV[9]  how many recent events an index keeps
then, for event i, five values: internal id, "1" to dedupe on its dedupe key else "0",
         event record JSON {"internal_id", "received_at", "event"}, event name, "1" when it
         must be processed whatever the indexes say else "0"

An event is stored once: a dedupe key seen within the TTL, or an internal id already stored,
answers the first event's internal id and writes nothing. Every new event is stored (history,
replay) and indexed by name; those that a trigger, a pending pause or their "must" flag listens
to are processed by one job, created in this same call with its broker message (when given), so
an event answered "stored" is in the broker's queue from the moment it is stored, and
"duplicate" always means the first copy's job was made with it (or nothing listened). A
repeated call (a lost reply re-sent) finds every event stored: it answers the same ids and
writes nothing, and pushes no second message.

Returns {job id or "", "1" if the message was pushed else "0", code 1, internal id 1, code 2,
internal id 2, ...}, code "stored" (queued), "idle" (stored, nothing listens) or "duplicate".
]]

-- @include "archive.lua"
-- @include "enqueue.lua"
-- @include "ingest.lua"

local k = {events = KEYS[1], archive = KEYS[2], jobs = KEYS[3], due = KEYS[4], by_run = KEYS[5],
  triggers = KEYS[6], wild = KEYS[7], built = KEYS[8]}
local now, n = ARGV[1], tonumber(ARGV[4])
if ARGV[5] ~= '0' then
  redis.call('HINCRBY', KEYS[9], '', ARGV[5])
end
local answers, job_id, named = ingest(k, 10, 9, n, now, ARGV[2], ARGV[3], ARGV[6] == '1')

local window = tonumber(ARGV[8])
if window > 0 then
  local seen, indexed = {}, {}
  for i = 1, n do
    if answers[2 * i - 1] ~= 'duplicate' then
      local key = KEYS[10 + 5 * n + i]
      redis.call('ZADD', key, now, ARGV[9 + 5 * (i - 1) + 1])
      if not seen[key] then
        seen[key] = true
        indexed[#indexed + 1] = key
      end
    end
  end
  for _, key in ipairs(indexed) do
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. (tonumber(now) - window))
    redis.call('ZREMRANGEBYRANK', key, 0, -tonumber(ARGV[9]) - 1)
    redis.call('PEXPIRE', key, window)
  end
end

local pushed = '0'
if named and ARGV[7] ~= '' then
  redis.call('LPUSH', KEYS[10], ARGV[7])
  pushed = '1'
end
table.insert(answers, 1, pushed)
table.insert(answers, 1, job_id)
return answers
