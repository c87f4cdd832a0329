"""Celery beat scheduler that also ticks Stepline: due timers, lost jobs and cron triggers.

Run with `celery -A tasks beat` (the app config names this scheduler). Two beats running by
mistake are harmless: releasing jobs and claiming cron times are atomic in Redis.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery.beat import Scheduler

from tasks import hooks

log = logging.getLogger("stepline.beat")


class TickScheduler(Scheduler):
    """An in-memory beat schedule plus Stepline's tick every `tick_seconds`; it also keeps the
    SDK apps of `STEPLINE_APP_URLS` synced."""

    _syncing = False

    def tick(self, *args: Any, **kwargs: Any) -> float:
        from tasks import engine

        wait: float = super().tick(*args, **kwargs)
        stepline = engine()
        if not self._syncing:
            self._syncing = True
            stepline.start_app_sync()
        try:
            now = int(time.time() * 1000)
            stepline.tick(now)
            hooks.beat_ticked(stepline, now)  # beat's heartbeat: its last tick
        except Exception:
            log.exception("stepline tick failed")
        return min(wait, stepline.settings.tick_seconds)
