"""Retention: finished runs and events are deleted from the history store
`STEPLINE_RETENTION_DAYS` after they ended (runs) or were received (events).

Redis keeps neither for long: a finished run or an event is archived to the history store
and dropped from Redis once the hot window (`STEPLINE_HOT_WINDOW_SECONDS`) has passed (see
`app/history/archiver.py`, which calls `apply` at most every `INTERVAL_MS`). Here the rows
are deleted oldest first in bounded batches, each its own short transaction, so a large
backlog is worked off over several calls without long locks. Runs still queued or running
are never in the history store, so never deleted.
"""

from __future__ import annotations

import logging

from app.config import Settings
from app.history.store import HistoryStore, Purged

log = logging.getLogger("stepline.retention")

DAY_MS = 86_400_000
INTERVAL_MS = 60_000
BATCH = 1_000
MAX_BATCHES = 10


def retention_ms(settings: Settings) -> int:
    return int(settings.retention_days * DAY_MS)


def apply(history: HistoryStore, settings: Settings, now: int) -> Purged:
    """Purge per `STEPLINE_RETENTION_DAYS` (0 or less keeps everything)."""
    keep = retention_ms(settings)
    return purge(history, now, keep) if keep > 0 else Purged()


def purge(
    history: HistoryStore,
    now: int,
    keep_ms: int,
    *,
    batch: int = BATCH,
    max_batches: int = MAX_BATCHES,
) -> Purged:
    """Delete runs that ended and events received at or before `now - keep_ms`, at most
    `batch * max_batches` of each."""
    cutoff = now - keep_ms
    total = Purged()
    for _ in range(max_batches):
        purged = history.purge(cutoff, batch)
        total.runs += purged.runs
        total.events += purged.events
        if purged.runs < batch and purged.events < batch:
            break
    if total.runs or total.events:
        log.info(
            "retention purged runs=%d events=%d",
            total.runs,
            total.events,
            extra={"purged_runs": total.runs, "purged_events": total.events},
        )
    return total
