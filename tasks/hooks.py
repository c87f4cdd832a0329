"""Process hooks of the Celery worker and beat, on Celery's signals (connected by `connect`).

logging      Celery's handlers get Stepline's formatter (STEPLINE_LOG_FORMAT), and a JSON
             worker prints no banner, so every line it writes is one JSON object
start-up     worker and beat check Redis' maxmemory-policy (app.release.at_start): a warning
             in dev, no start in production
heartbeat    the worker's main process reports itself and the jobs it runs every
             STEPLINE_HEARTBEAT_SECONDS (app.liveness); beat's heartbeat is in its tick
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from celery import signals
from celery.apps.worker import (  # type: ignore[attr-defined]  # defined under `if not is_jython`
    install_worker_term_handler,
    install_worker_term_hard_handler,
)
from celery.worker import state

from app import logs
from app.config import Settings
from app.errors import SteplineError
from app.liveness import Heartbeat, run_in_thread
from app.release import at_start
from app.state.client import store_for

if TYPE_CHECKING:
    from app.engine import Engine

_stop: threading.Event | None = None
_beat: Heartbeat | None = None


def connect(settings: Settings) -> None:
    logs.capture_warnings(settings.log_format)

    def use_format(logger: logging.Logger, **_: Any) -> None:
        logs.use_format(logger, settings.log_format)

    def quiet_when_json(instance: Any, **_: Any) -> None:
        if settings.log_format == "json":
            instance.quiet = True  # the banner is not a log line

    def check(process: str) -> Callable[..., None]:
        def at_process_start(**_: Any) -> None:
            try:
                at_start(settings, process)
            except SteplineError as exc:
                sys.exit(f"stepline: {exc}")  # SystemExit passes through Celery's dispatch

        return at_process_start

    def heartbeat(sender: Any, **_: Any) -> None:
        global _stop
        beat = Heartbeat(
            store_for(settings),
            "worker",
            settings.heartbeat_seconds,
            _now(),
            pool=type(sender.pool).__module__.rsplit(".", 1)[-1],
            concurrency=int(getattr(sender.controller, "concurrency", 0) or 0),
            queues=sorted(sender.app.amqp.queues.consume_from or ()),
        )
        _stop = run_in_thread(beat, _running_jobs, _now)

    def own_shutdown_line(sender: Any, **_: Any) -> None:
        # Celery prints "worker: Warm shutdown (MainProcess)" raw to stdout from its SIGTERM
        # (and SIGQUIT) handler; the same handlers without that print, and the line written
        # in Stepline's format instead (log_shutting_down), keep one log format.
        controller = getattr(sender, "controller", None)
        if controller is not None:
            install_worker_term_handler(controller, verbose=False)
            install_worker_term_hard_handler(controller, verbose=False)

    def log_shutting_down(how: str = "Warm", **_: Any) -> None:
        logs.write_line(settings.log_format, "celery.apps.worker", f"worker: {how} shutdown")

    def stop_heartbeat(**_: Any) -> None:
        if _stop is not None:
            _stop.set()

    signals.after_setup_logger.connect(use_format, weak=False)
    signals.after_setup_task_logger.connect(use_format, weak=False)
    signals.celeryd_init.connect(quiet_when_json, weak=False)
    signals.worker_init.connect(check("worker"), weak=False)
    signals.beat_init.connect(check("beat"), weak=False)
    signals.worker_ready.connect(heartbeat, weak=False)
    signals.worker_ready.connect(own_shutdown_line, weak=False)
    signals.worker_shutting_down.connect(log_shutting_down, weak=False)
    signals.worker_shutdown.connect(stop_heartbeat, weak=False)


def beat_ticked(engine: Engine, now: int) -> None:
    """Beat's heartbeat, written from its tick (at most once per interval)."""
    global _beat
    if _beat is None:
        _beat = Heartbeat(engine.store, "beat", engine.settings.heartbeat_seconds, now)
    _beat.beat(now)


def _running_jobs() -> list[str]:
    """Job ids of the tasks this worker executes now (a Celery message's first argument is the
    id, or a list of them: many due timers in one message)."""
    ids: list[str] = []
    for request in list(state.active_requests):
        if request.args:
            arg = request.args[0]
            ids.extend(str(i) for i in arg) if isinstance(arg, list) else ids.append(str(arg))
    return sorted(ids)


def _now() -> int:
    return int(time.time() * 1000)
