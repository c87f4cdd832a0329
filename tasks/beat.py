"""Celery beat scheduler that also ticks Stepline: due timers, lost jobs and cron triggers.

Run with `celery -A tasks beat` (the app config names this scheduler). Two beats running by
mistake are harmless: releasing jobs and claiming cron times are atomic in Redis.

Beat ticks in full (timers, lost jobs, cron, archiving, slots, its heartbeat) every
`tick_seconds`, and in between wakes when the next job falls due (`Queue.next_release`) to
send just the due jobs: a timer fires at its time, not at the next tick.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.beat import Scheduler

from tasks import hooks

log = logging.getLogger("stepline.beat")

MIN_WAIT_S = 0.02
"""Never tick again sooner than this (a release cut short by its budget resumes then): less
than the release's lookahead (`LOOKAHEAD_MS`), so no timer is late for it, while timers
falling due densely go out a few dozen per tick, not one or two."""


ENGINE_RETRY_S = 0.5
"""How soon beat tries again to build its engine when that failed (Redis down at start)."""


class TickScheduler(Scheduler):
    """An in-memory beat schedule plus Stepline's tick every `tick_seconds`, and a release of
    due jobs whenever one falls due in between; it also keeps the SDK apps of
    `STEPLINE_APP_URLS` synced."""

    _syncing = False
    _full_at = 0
    """When the next full tick is due (ms)."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        from tasks import engine

        wait: float = super().tick(*args, **kwargs)
        try:
            stepline = engine()
        except Exception:  # Redis unreachable as beat starts: try again, never exit
            log.exception("stepline engine not ready, retrying in %.1f s", ENGINE_RETRY_S)
            return min(wait, ENGINE_RETRY_S)
        if not self._syncing:
            self._syncing = True
            stepline.start_app_sync()
        tick_ms = int(stepline.settings.tick_seconds * 1000)
        upcoming: int | None = None
        try:
            now = _now()
            if now >= self._full_at:
                self._full_at = now + tick_ms
                stepline.tick(now)
                hooks.beat_ticked(stepline, now)  # beat's heartbeat: its last tick
            else:
                stepline.queue.release_due(now)
            upcoming = stepline.queue.next_release()
        except Exception:
            log.exception("stepline tick failed")
        now = _now()
        next_ms = self._full_at if upcoming is None else min(self._full_at, upcoming)
        return max(MIN_WAIT_S, min(wait, (next_ms - now) / 1000))


def _now() -> int:
    return int(time.time() * 1000)
