"""The archiver: finished runs and received events go from Redis to the history store, and
Redis drops them once the hot window has passed.

    finish_run.lua / ingest_events.lua ─► <p>:history:runs|events      (queued with the change)
    beat tick ─► due_job(now) ─► ARCHIVE job ─► worker: run_job
                     claim a batch (leased) ─► read it ─► upsert + COMMIT ─► mark archived
                                                                         (drop at now + hot)
    beat tick ─► drop_due(now) ─► remove from Redis what is archived and past its hot window

Exactly once, whatever crashes: a batch is upserted by id (saving twice leaves one copy) and
only marked archived after the commit; a worker killed before that leaves the batch leased,
and it is claimed again when the lease runs out. Redis drops nothing that is not marked
archived, so nothing is lost either. Retention of the history store runs here too (once a
minute per worker process while it keeps up, at every job while rows are still due:
`app/retention.py`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

from app import retention
from app.config import Settings
from app.history.store import HistoryStore
from app.models import Job, JobKind
from app.state.archive import ArchiveStore

log = logging.getLogger("stepline.history")

BATCH = 500
"""Runs (and events) per claim: one pipelined Redis read and one database transaction."""
BUDGET_SECONDS = 5.0
"""How long one ARCHIVE job keeps draining the queues before it leaves the rest to the next."""
JOB_EVERY_MS = 5_000
"""Beat sends at most one ARCHIVE job per this many ms (its id is the time bucket)."""
DROP_BATCH = 500
"""Runs (and events) dropped from Redis per beat tick at most."""
YIELD_TO_TIMERS_MS = 1_000
"""An ARCHIVE job stops after its current batch when a timer falls due within this long (or
is overdue): it holds a pool process for up to BUDGET_SECONDS, and a flood of wakes needs
every process. It archives one batch per job at least, so archiving never stops."""


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class Archiver:
    def __init__(
        self,
        archive: ArchiveStore,
        history: HistoryStore,
        settings: Settings,
        clock: Callable[[], int] = wall_clock_ms,
        next_timer: Callable[[], int | None] | None = None,
    ) -> None:
        self._archive = archive
        self._next_timer = next_timer
        """When the next job is due to be sent (ms; `Queue.next_release`), to yield to
        timers (YIELD_TO_TIMERS_MS); None: never yield."""
        self.history = history
        self._settings = settings
        self._hot_ms = int(settings.hot_window_seconds * 1000)
        self._lease_ms = int(settings.lease_seconds * 1000)
        """How long a claimed batch is its claimer's before another archiver may take it
        (STEPLINE_LEASE_SECONDS, as for jobs: a claimer that dies is noticed as fast)."""
        self._clock = clock
        self._last_job = ""
        self._last_job_at = 0
        self._last_retention = 0
        self._retention_behind = False
        """Retention stopped with rows due: apply it again at the next job, not a minute on."""

    # --- beat -----------------------------------------------------------------------------
    def due_job(self, now: int) -> Job | None:
        """The ARCHIVE job to send now, if any: when runs or events wait for the archiver,
        and once a minute anyway (retention). Never while the last one is still queued (it
        may be retrying while the database is down: one at a time, not a pile)."""
        if now - self._last_job_at < JOB_EVERY_MS:
            return None
        if self._last_job and self._archive.job_queued(self._last_job):
            return None
        runs, events = self._archive.backlog(now)
        if not runs and not events and now - self._last_job_at < retention.INTERVAL_MS:
            return None
        self._last_job_at = now
        self._last_job = f"archive:{now // JOB_EVERY_MS}"
        return Job(id=self._last_job, kind=JobKind.ARCHIVE)

    def drop_due(self, now: int) -> int:
        """Drop from Redis the archived runs and events whose hot window has passed."""
        run_ids, event_ids = self._archive.due_drops(now, DROP_BATCH)
        dropped = self._archive.drop_runs(run_ids, now) if run_ids else 0
        for event_id in event_ids:
            if self._archive.drop_event(event_id, now, now + self._hot_ms) == "dropped":
                dropped += 1
        return dropped

    # --- worker ---------------------------------------------------------------------------
    def run_job(self, job: Job) -> None:
        """Archive until nothing is due, the budget is spent or timers fall due (after one
        batch at least), then apply retention."""
        deadline = time.monotonic() + BUDGET_SECONDS
        while (
            self.archive_once(self._clock())
            and time.monotonic() < deadline
            and not self._timers_due()
        ):
            pass
        now = self._clock()
        if self._retention_behind or now - self._last_retention >= retention.INTERVAL_MS:
            self._last_retention = now
            purged = retention.apply(self.history, self._settings, now)
            self._retention_behind = not purged.caught_up

    def _timers_due(self) -> bool:
        if self._next_timer is None:
            return False
        next_at = self._next_timer()
        return next_at is not None and next_at <= self._clock() + YIELD_TO_TIMERS_MS

    def archive_once(self, now: int) -> int:
        """Archive one batch of runs and one of events; returns how many were archived."""
        return self._archive_runs(now) + self._archive_events(now)

    def _archive_runs(self, now: int) -> int:
        token = uuid.uuid4().hex
        run_ids = self._archive.claim_runs(token, now, self._lease_ms, BATCH)
        if not run_ids:
            return 0
        runs = self._archive.read_runs(run_ids)
        found = {run.run_id for run in runs}
        self.history.save_runs(runs, now)
        live = self._archive.live_runs([rid for rid in run_ids if rid not in found])
        if live:
            log.warning("runs queued for the archive have not ended run_ids=%s", ",".join(live))
        done = [run_id for run_id in run_ids if run_id not in live]
        self._archive.archived_runs(token, done, now + self._hot_ms)
        return len(done)

    def _archive_events(self, now: int) -> int:
        token = uuid.uuid4().hex
        event_ids = self._archive.claim_events(token, now, self._lease_ms, BATCH)
        if not event_ids:
            return 0
        self.history.save_events(self._archive.read_events(event_ids))
        self._archive.archived_events(token, event_ids, now + self._hot_ms)
        return len(event_ids)
