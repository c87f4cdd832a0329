"""Every Redis key Stepline uses, built in one place.

Run-scoped keys carry the run id as a hash tag (`sl:{<run id>}:steps`) so that a run's keys
share one Redis Cluster slot; the scripts that touch only one run (save_step, record_step,
set_pending, mark_started, load_run's pipeline) are therefore cluster-safe. Global keys hold
indexes across runs.

    run-scoped                      type    content
    <p>:{<run>}:run                 hash    run meta: run_id, function_id, status, events,
                                            event_ids, created_at, started_at, ended_at,
                                            output, error, die, correlation_id
    <p>:{<run>}:steps               hash    hashed step id -> memo JSON
    <p>:{<run>}:stack               list    hashed step ids in completion order
    <p>:{<run>}:pending             set     parallel steps not yet finished
    <p>:{<run>}:history             hash    hashed step id -> history record (see store.py)
    <p>:{<run>}:pauses              set     ids of the run's pauses

    global                          type    content
    <p>:runs                        zset    run id, score created_at (ms)
    <p>:runs:fn:<function id>       zset    run id, score created_at (ms)
    <p>:runs:st:<status>            zset    run id, score created_at (ms), runs in that status
    <p>:runs:st:<status>:fn:<fn id> zset    the same, of one function
    <p>:runs:ended                  zset    run id, score ended_at (ms)
    <p>:idem:<fn id>:<key>          string  run id (PX idempotency TTL)
    <p>:events                      zset    event internal id, score received_at (ms)
    <p>:event:<internal id>         string  {"internal_id", "received_at", "event"} JSON
    <p>:event-runs:<internal id>    set     run ids started by the event
    <p>:event-dedupe:<user id>      string  internal id of the first event with that id (PX)
    <p>:engine-event-dedupe:<id>    string  the same for events the engine emits (PX)
    <p>:triggers                    set     trigger event names of every function (save_app)
    <p>:triggers:wild               set     those with wildcards (`app/*`)
    <p>:triggers:built              string  "1" once save_app built the two sets
    <p>:pause:<pause id>            string  Pause JSON
    <p>:pauses:expiry               zset    pause id, score expires_at (ms): GC and count
    <p>:pidx:<event>:<path>:<value> set     ids of pauses indexed under (path, value)
    <p>:pidx-paths:<event>          hash    index path -> number of pauses using it
    <p>:pscan:<event>               set     ids of unindexed pauses of that event
    <p>:pcorr                       hash    correlation id -> pause id
    <p>:jobs                        hash    job id -> Job JSON
    <p>:jobs:due                    zset    job id, score send-by / lease deadline (ms)
    <p>:jobs:owner                  hash    job id -> lease token
    <p>:jobs:lease                  hash    job id -> lease deadline (ms)
    <p>:jobs:failures               hash    job id -> times its handler raised
    <p>:jobs:by-run                 zset    "<run id>|<job id>", all scores 0 (lex range/run)
    <p>:job-done:<job id>           string  tombstone of a finished job (PX 24 h)
    <p>:functions                   hash    function id -> FunctionConfig JSON
    <p>:apps                        hash    app id -> app record JSON
    <p>:app-fns:<app id>            set     function ids of the app
    <p>:registry-version            string  sync id of the last registry change (never reused)
    <p>:app-syncs                   hash    app id -> "<sync id> <0|1>": last registration
    <p>:cron-claim:<fn>:<ms>        string  "1" (PX): one claimer per scheduled time
    <p>:cron-cursor                 hash    function id -> last scheduled time (ms)
    <p>:metric:<name>               hash    label (function id, ...) -> counter (metrics.py)

Bulk operations (built in `bulk.py`, see app/bulk.py):

    <p>:bulk:<id>                   hash    state, spec, estimate, counters, cursor
    <p>:bulk:<id>:runs              hash    run id -> "<outcome> <detail>" (each run once)
    <p>:bulks                       zset    bulk id, score created_at (ms)

History (`ArchiveKeys`, for `archive.py`): what waits for the archiver, and what Redis drops
once the history store has it (see app/history/archiver.py):

    <p>:history:runs                zset    run id, score when the archiver may claim it
                                            (ended_at; a claim moves it to its lease deadline)
    <p>:history:events              zset    event internal id, the same
    <p>:history:claim:<token>       string  JSON list of the ids one claim took (PX lease)
    <p>:history:drop-runs           zset    archived run id, score when Redis drops it (ms)
    <p>:history:drop-events         zset    archived event internal id, the same

Flow control (`FlowKeys`, for `flow.py`); `<key hash>` is the hashed value of a key
expression, `-` when the option has none:

    <p>:flow:rl:<fn>:<key hash>              string  GCRA theoretical arrival time, ms (PX)
    <p>:flow:rl-seen:<fn>:<event id>         string  the event's schedule was admitted (PX 30 min)
    <p>:flow:outcomes:<event id>             hash    fn id -> outcome JSON (PX 7 d)
    <p>:flow:debounce:<fn>:<key hash>        string  current debounce id (PX)
    <p>:flow:debounce-item:<debounce id>     hash    fn, key, event_id, event, ts, due,
                                                     timeout_at, gen, state (PX)
    <p>:flow:batch:<fn>:<key hash>           string  open batch id (PX)
    <p>:flow:batch-events:<batch id>         list    {"id", "event"} JSON per event (PX)
    <p>:flow:batch-meta:<batch id>           hash    fn, key, status, created_at, bytes (PX)
    <p>:flow:batch-seen:<fn>:<event id>      string  batch the event joined (PX 30 min)
    <p>:flow:singleton:<fn>:<key hash>       hash    run_id (holder), at (ms)
    <p>:flow:singleton-run:<run id>          string  name of the lock key the run holds
    <p>:flow:singleton-decision:<fn>:<sched> hash    code, run_id, other (PX 24 h)
"""

from __future__ import annotations

from dataclasses import dataclass

RUN_JOB_SEPARATOR = "|"
"""Joins run id and job id in `jobs:by-run` (the scripts use the same literal); run ids
(ULIDs) never contain it."""


@dataclass(frozen=True)
class RunKeys:
    """The keys of one run, in the order the scripts' headers list them."""

    meta: str
    steps: str
    stack: str
    pending: str
    history: str
    pauses: str


@dataclass(frozen=True)
class Keys:
    prefix: str = "sl"

    # --- runs -----------------------------------------------------------------------------
    def run(self, run_id: str) -> RunKeys:
        base = f"{self.prefix}:{{{run_id}}}"
        return RunKeys(
            meta=f"{base}:run",
            steps=f"{base}:steps",
            stack=f"{base}:stack",
            pending=f"{base}:pending",
            history=f"{base}:history",
            pauses=f"{base}:pauses",
        )

    @property
    def runs(self) -> str:
        return f"{self.prefix}:runs"

    def function_runs(self, function_id: str) -> str:
        return f"{self.prefix}:runs:fn:{function_id}"

    def status_runs(self, status: str, function_id: str | None = None) -> str:
        base = f"{self.prefix}:runs:st:{status}"
        return base if function_id is None else f"{base}:fn:{function_id}"

    @property
    def ended_runs(self) -> str:
        return f"{self.prefix}:runs:ended"

    def metric(self, name: str) -> str:
        return f"{self.prefix}:metric:{name}"

    def idempotency(self, key: str) -> str:
        return f"{self.prefix}:idem:{key}"

    # --- events ---------------------------------------------------------------------------
    @property
    def events(self) -> str:
        return f"{self.prefix}:events"

    def event(self, internal_id: str) -> str:
        return f"{self.prefix}:event:{internal_id}"

    def event_runs(self, internal_id: str) -> str:
        return f"{self.prefix}:event-runs:{internal_id}"

    def event_dedupe(self, user_id: str) -> str:
        return f"{self.prefix}:event-dedupe:{user_id}"

    def engine_event_dedupe(self, event_id: str) -> str:
        """Ids of events the engine emits (invoke, cron, lifecycle): never a user's."""
        return f"{self.prefix}:engine-event-dedupe:{event_id}"

    @property
    def triggers(self) -> str:
        return f"{self.prefix}:triggers"

    @property
    def trigger_globs(self) -> str:
        return f"{self.prefix}:triggers:wild"

    @property
    def triggers_built(self) -> str:
        return f"{self.prefix}:triggers:built"

    # --- pauses ---------------------------------------------------------------------------
    def pause(self, pause_id: str) -> str:
        return f"{self.prefix}:pause:{pause_id}"

    @property
    def pause_expiry(self) -> str:
        return f"{self.prefix}:pauses:expiry"

    def pause_index(self, event: str, path: str, value: str) -> str:
        return f"{self.prefix}:pidx:{event}:{path}:{value}"

    def pause_paths(self, event: str) -> str:
        return f"{self.prefix}:pidx-paths:{event}"

    def pause_scan(self, event: str) -> str:
        return f"{self.prefix}:pscan:{event}"

    def recent_events(self, event: str) -> str:
        """zset: internal ids of the latest events of one name by received_at (lookback)."""
        return f"{self.prefix}:recent-events:{event}"

    @property
    def pause_correlations(self) -> str:
        return f"{self.prefix}:pcorr"

    # --- jobs -----------------------------------------------------------------------------
    @property
    def jobs(self) -> str:
        return f"{self.prefix}:jobs"

    @property
    def jobs_due(self) -> str:
        return f"{self.prefix}:jobs:due"

    @property
    def job_owners(self) -> str:
        return f"{self.prefix}:jobs:owner"

    @property
    def job_leases(self) -> str:
        return f"{self.prefix}:jobs:lease"

    @property
    def job_failures(self) -> str:
        return f"{self.prefix}:jobs:failures"

    @property
    def jobs_by_run(self) -> str:
        return f"{self.prefix}:jobs:by-run"

    def job_tombstone(self, job_id: str) -> str:
        return f"{self.prefix}:job-done:{job_id}"

    # --- functions and apps ---------------------------------------------------------------
    @property
    def functions(self) -> str:
        return f"{self.prefix}:functions"

    @property
    def apps(self) -> str:
        return f"{self.prefix}:apps"

    def app_functions(self, app_id: str) -> str:
        return f"{self.prefix}:app-fns:{app_id}"

    @property
    def registry_version(self) -> str:
        return f"{self.prefix}:registry-version"

    @property
    def app_syncs(self) -> str:
        return f"{self.prefix}:app-syncs"

    # --- cron -----------------------------------------------------------------------------
    def cron_claim(self, function_id: str, scheduled_at: int) -> str:
        return f"{self.prefix}:cron-claim:{function_id}:{scheduled_at}"

    @property
    def cron_cursor(self) -> str:
        return f"{self.prefix}:cron-cursor"


@dataclass(frozen=True)
class FlowKeys:
    prefix: str = "sl"

    def rate_limit(self, function_id: str, key_hash: str) -> str:
        return f"{self.prefix}:flow:rl:{function_id}:{key_hash}"

    def rate_limit_seen(self, function_id: str, event_id: str) -> str:
        return f"{self.prefix}:flow:rl-seen:{function_id}:{event_id}"

    def outcomes(self, event_id: str) -> str:
        return f"{self.prefix}:flow:outcomes:{event_id}"

    def debounce(self, function_id: str, key_hash: str) -> str:
        return f"{self.prefix}:flow:debounce:{function_id}:{key_hash}"

    def debounce_item(self, debounce_id: str) -> str:
        return f"{self.prefix}:flow:debounce-item:{debounce_id}"

    def batch(self, function_id: str, key_hash: str) -> str:
        return f"{self.prefix}:flow:batch:{function_id}:{key_hash}"

    def batch_events(self, batch_id: str) -> str:
        return f"{self.prefix}:flow:batch-events:{batch_id}"

    def batch_meta(self, batch_id: str) -> str:
        return f"{self.prefix}:flow:batch-meta:{batch_id}"

    def batch_seen(self, function_id: str, event_id: str) -> str:
        return f"{self.prefix}:flow:batch-seen:{function_id}:{event_id}"

    def singleton(self, function_id: str, key_hash: str) -> str:
        return f"{self.prefix}:flow:singleton:{function_id}:{key_hash}"

    def singleton_run(self, run_id: str) -> str:
        return f"{self.prefix}:flow:singleton-run:{run_id}"

    def singleton_decision(self, function_id: str, schedule_key: str) -> str:
        return f"{self.prefix}:flow:singleton-decision:{function_id}:{schedule_key}"


@dataclass(frozen=True)
class ArchiveKeys:
    prefix: str = "sl"

    @property
    def runs(self) -> str:
        return f"{self.prefix}:history:runs"

    @property
    def events(self) -> str:
        return f"{self.prefix}:history:events"

    def claim(self, token: str) -> str:
        return f"{self.prefix}:history:claim:{token}"

    @property
    def drop_runs(self) -> str:
        return f"{self.prefix}:history:drop-runs"

    @property
    def drop_events(self) -> str:
        return f"{self.prefix}:history:drop-events"


@dataclass(frozen=True)
class SlotKeys:
    """Execution-time flow control's keys: concurrency slots and throttles (their table is in
    app/state/slots.py)."""

    prefix: str = "sl"

    def slots(self, constraint: str) -> str:
        return f"{self.prefix}:slots:{constraint}"

    def waiters(self, constraint: str) -> str:
        return f"{self.prefix}:slots-wait:{constraint}"

    @property
    def waiting(self) -> str:
        return f"{self.prefix}:slots:waiting"

    @property
    def limits(self) -> str:
        return f"{self.prefix}:slots:limits"

    def throttle(self, name: str) -> str:
        return f"{self.prefix}:throttle:{name}"

    def ticket(self, run_id: str) -> str:
        return f"{self.prefix}:{{{run_id}}}:throttle"
