"""Retention: finished runs and events are deleted `STEPLINE_RETENTION_DAYS` after they ended
(runs) or were received (events). Beat calls `purge` from `Engine.tick` at most every
`INTERVAL_MS`.

Nothing here blocks Redis: candidates come from the `runs:ended` and `events` indexes in
bounded batches (`ZRANGEBYSCORE ... LIMIT`), each run or event is deleted by its own short
script (`lua/delete_run.lua`, `lua/delete_event.lua`), and one call does at most
`MAX_BATCHES` batches of each; the rest waits for the next call. Never `KEYS` or `SCAN`.
Runs still queued or running are never deleted, however old.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from app.config import Settings
from app.state.ops import OpsStore
from app.state.store import Store

log = logging.getLogger("stepline.retention")

DAY_MS = 86_400_000
INTERVAL_MS = 60_000
BATCH = 200
MAX_BATCHES = 10


@dataclass
class Purged:
    runs: int = 0
    events: int = 0


def retention_ms(settings: Settings) -> int:
    return int(settings.retention_days * DAY_MS)


def apply(store: Store, settings: Settings, now: int) -> Purged:
    """The beat tick's call: purge per `STEPLINE_RETENTION_DAYS` (0 or less keeps all)."""
    keep = retention_ms(settings)
    return purge(store, now, keep) if keep > 0 else Purged()


def purge(
    store: Store,
    now: int,
    keep_ms: int,
    *,
    batch: int = BATCH,
    max_batches: int = MAX_BATCHES,
) -> Purged:
    """Delete runs that ended and events received at or before `now - keep_ms`."""
    cutoff = now - keep_ms
    ops = OpsStore(store)
    purged = Purged()
    for _ in range(max_batches):
        run_ids = ops.ended_runs_before(cutoff, batch)
        purged.runs += sum(1 for run_id in run_ids if ops.delete_run(run_id, cutoff))
        if len(run_ids) < batch:
            break
    for _ in range(max_batches):
        event_ids = ops.events_before(cutoff, batch)
        purged.events += sum(1 for event_id in event_ids if ops.delete_event(event_id, cutoff))
        if len(event_ids) < batch:
            break
    if purged.runs or purged.events:
        log.info(
            "retention purged runs=%d events=%d",
            purged.runs,
            purged.events,
            extra={"purged_runs": purged.runs, "purged_events": purged.events},
        )
    return purged
