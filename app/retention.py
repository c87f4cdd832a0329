"""Retention: finished runs and events are deleted from the history store
`STEPLINE_RETENTION_DAYS` after they ended (runs) or were received (events).

Redis keeps neither for long: a finished run or an event is archived to the history store
and dropped from Redis once the hot window (`STEPLINE_HOT_WINDOW_SECONDS`) has passed (see
`app/history/archiver.py`, which calls `apply` at most every `INTERVAL_MS`). Here the rows
are deleted oldest first in batches, each its own short transaction (no long locks), for as
long as rows are due, within a time budget per call (`BUDGET_SECONDS`). A call that ran out
of budget with rows still due says so (`Purged.caught_up`), and the archiver applies
retention again at its next job instead of a minute later: deletion keeps up with any run
rate the archiver keeps up with, rather than being capped at a number of rows a minute.
Runs still queued or running are never in the history store, so never deleted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from app.config import Settings
from app.history.store import HistoryStore, Purged

log = logging.getLogger("stepline.retention")

DAY_MS = 86_400_000
INTERVAL_MS = 60_000
"""Retention runs at most this often while it is caught up."""
BATCH = 1_000
"""Rows (runs, and events) per delete transaction."""
BUDGET_SECONDS = 2.0
"""How long one call keeps deleting batches while rows are due."""


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
    batch: int | None = None,
    budget_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Purged:
    """Delete runs that ended and events received at or before `now - keep_ms`, a batch at a
    time (`BATCH`), until none is left (`caught_up`) or `budget_s` (`BUDGET_SECONDS`) is spent,
    after one batch at least."""
    batch = batch or BATCH
    cutoff = now - keep_ms
    total = Purged(caught_up=False)
    deadline = clock() + (BUDGET_SECONDS if budget_s is None else budget_s)
    while True:
        purged = history.purge(cutoff, batch)
        total.runs += purged.runs
        total.events += purged.events
        if purged.runs < batch and purged.events < batch:
            total.caught_up = True
            break
        if clock() >= deadline:
            break
    if total.runs or total.events:
        log.info(
            "retention purged runs=%d events=%d caught_up=%s",
            total.runs,
            total.events,
            total.caught_up,
            extra={
                "purged_runs": total.runs,
                "purged_events": total.events,
                "caught_up": total.caught_up,
            },
        )
    return total
