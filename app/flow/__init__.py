"""Flow control: what decides whether, when and how many runs and steps may go ahead.

Two halves, placed where Inngest places them (ENGINE.md 6, rule 10 of section 9):

    event ─► runner ─► admission.admit ──► start ─► create run ─► admission.on_scheduled
                        (before state)  ├─► skip    (cancel pauses, timeout jobs)
                                        └─► hold ─► DEBOUNCE / BATCH timer job ─► create run
    job ─► executor ─► slots.acquire ─► execute steps ─► release
                        (at execution)  └─► parked / deferred (never dropped)

* `admission` (before a run exists; may drop or merge events): batching, rate limit,
  debounce, idempotency key, singleton; then, once the run is created, `cancel` pauses and
  the `timeouts.start` / `timeouts.finish` jobs (kind CANCEL); bulk cancellation. Every
  skipped or held event is recorded per function (`FlowStore.event_outcomes`).
  `Admission` composes `gates` (rate limit, idempotency, singleton), `timers` (debounce,
  batching), `cancellation` (cancel pauses, timeouts, bulk) and `outcomes` (decisions, records).
  Option limits, key expressions and validation (used by `app.sdk` and `app.sync` too) are
  in `options`.
* `slots` (when a job executes; delays, never drops): concurrency (executing steps, not
  runs), throttle (run starts, GCRA) and priority (order of waiting runs).

Redis state lives in `app/state/flow.py` and `app/state/slots.py`, one Lua script per
transition in `lua/flow_*.lua` and `lua/slots_*.lua`.
"""
