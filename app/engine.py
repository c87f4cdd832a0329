"""Wiring: one `Engine` per process holds the stages of the data flow.

    event API ──► runner ──► queue ──► (Celery) ──► executor ──► driver
                    │                                  │
                    └──────────────► state ◄───────────┘

Nothing is built at import time; `Engine.create` builds it from `Settings`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app import tracing
from app.bulk import Bulks
from app.config import Settings
from app.functions import FunctionSet, load_functions
from app.history import open_settings_history
from app.history.archiver import Archiver
from app.history.reads import Reads
from app.logs import configure as configure_logs
from app.models import FunctionConfig, Job, JobKind, RunStatus
from app.queue import Queue, Sender, celery_sender
from app.registry import Registry
from app.retention import retention_ms
from app.state.archive import ArchiveStore
from app.state.bulk import BulkStore
from app.state.client import store_for
from app.state.store import RunState, Store
from app.worker import Handler, JobRunner

if TYPE_CHECKING:
    from app.drivers.base import Driver
    from app.executor import Executor
    from app.flow.admission import Admission
    from app.runner import Runner


RESYNC_MS = 30_000
APP_RESYNC_SECONDS = 300.0


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Engine:
    settings: Settings
    store: Store
    queue: Queue
    registry: Registry
    local: FunctionSet
    runner: Runner
    executor: Executor
    jobs: JobRunner
    admission: Admission
    """Flow control before runs (rate limit, debounce, batch, ...)."""
    archiver: Archiver
    """Moves finished runs and events to the history store; Redis drops them after."""
    reads: Reads
    """Runs and events wherever they are (Redis or the history store): what the API reads."""
    bulks: Bulks
    """Bulk cancel and replay by filter, as background jobs (app/bulk.py)."""
    _last_sync: int = 0

    @staticmethod
    def now() -> int:
        return wall_clock_ms()

    @classmethod
    def create(
        cls,
        settings: Settings,
        sender: Sender | None = None,
        local: FunctionSet | None = None,
        *,
        inline: bool = False,
    ) -> Engine:
        """Build the stages. `inline` (worker processes only): the runner leaves the start
        jobs of the in-process runs it creates to the task's work list (`JobRunner.work`),
        which runs them here within the step budget, instead of sending them."""
        from app import signals
        from app.drivers.connect import ConnectDriver
        from app.drivers.http import HttpDriver
        from app.drivers.inprocess import InProcessDriver
        from app.executor import Executor
        from app.flow.admission import Admission
        from app.runner import Runner
        from app.state.connect import ConnectStore
        from app.state.flow import FlowStore

        configure_logs(settings.log_format)
        tracing.configure()  # only when the OTEL_* variables ask for traces
        store = store_for(settings)
        queue = Queue(store, sender or celery_sender(settings), settings)
        registry = Registry(store)
        queue.calls_app = registry.calls_app
        queue.learn_runs = registry.learn_runs
        functions = local if local is not None else load_functions(settings.functions)
        runner = Runner(store, queue, registry, settings)
        functions.install_sender(lambda events: runner.ingest(events, wall_clock_ms()))
        functions.install_signal_sender(
            lambda name, data: signals.send(store, runner, name, data, wall_clock_ms())
        )
        drivers: dict[str, Driver] = {
            "inprocess": InProcessDriver(functions),
            "http": HttpDriver(settings),
            "connect": ConnectDriver(ConnectStore(store), settings),
        }
        executor = Executor(store, queue, registry, runner, drivers, settings)
        admission = Admission(FlowStore(store), store, queue, registry, runner, executor.lifecycle)
        runner.admission = admission
        runner.slots = executor.slots
        archiver = Archiver(
            ArchiveStore(store),
            open_settings_history(settings),
            settings,
            next_timer=queue.next_release,
        )

        def on_finish(state: RunState, status: RunStatus, now: int) -> None:
            runner.fresh.take(state.run_id)  # a run created started may wait in the work list
            admission.on_finish(state, status, now)

        executor.lifecycle.on_finish = on_finish
        handlers: dict[JobKind, Handler] = {
            JobKind.START: executor.run_job,
            JobKind.EDGE: executor.run_job,
            JobKind.SLEEP: executor.run_job,
            JobKind.PAUSE_TIMEOUT: executor.run_job,
            JobKind.EVENT: lambda job: runner.process_events(job, wall_clock_ms()),
            JobKind.DEBOUNCE: lambda job: runner.start_held(admission.run_debounce(job)),
            JobKind.BATCH: lambda job: runner.start_held(admission.run_batch(job)),
            JobKind.CANCEL: admission.run_timeout,
            JobKind.ARCHIVE: archiver.run_job,
        }
        reads = Reads(store, archiver.history)
        bulk_store = BulkStore(store, retention_ms(settings))
        bulks = Bulks(bulk_store, reads, queue, runner, executor.cancel, wall_clock_ms)
        handlers[JobKind.BULK] = bulks.run_job

        def give_up(job: Job, problem: str, name_step: bool) -> None:
            executor.give_up(job, problem, wall_clock_ms(), name_step=name_step)

        jobs = JobRunner(
            store,
            settings.lease_seconds,
            handlers,
            give_up,
            settings.max_job_failures,
            send=queue.dispatch,
            budget_seconds=settings.step_budget_seconds,
            peers=settings.worker_concurrency,
            backlog=queue.backlog,
            # One registry version read per task, however many jobs and lookups it makes.
            task=registry.pinned,
            starter=runner,
            prefetch=executor.woken,
        )
        engine = cls(
            settings,
            store,
            queue,
            registry,
            functions,
            runner,
            executor,
            jobs,
            admission,
            archiver,
            reads,
            bulks,
        )
        runner.canceller = executor.cancel
        runner.works_here = inline
        engine.sync_local()
        return engine

    def sync_local(self) -> None:
        """Publish this process's in-process functions to the shared registry (again at
        every RESYNC_MS from beat, so a Redis that lost its data gets them back)."""
        self._last_sync = self.now()
        by_app: dict[str, list[FunctionConfig]] = {}
        for config in self.local.configs():
            by_app.setdefault(config.app_id, []).append(config)
        for app_id, configs in by_app.items():
            self.store.save_app(app_id, None, configs, self.now())

    def start_app_sync(self) -> threading.Thread | None:
        """Sync the apps of `STEPLINE_APP_URLS` in the background (beat calls this once):
        retried while an app is down, and again every APP_RESYNC_SECONDS."""
        if not self.settings.app_urls:
            return None
        from app.sync import sync_apps_forever

        thread = threading.Thread(
            target=sync_apps_forever,
            args=(self.settings.app_urls, self.settings),
            kwargs={"resync_s": APP_RESYNC_SECONDS},
            name="app-sync",
            daemon=True,
        )
        thread.start()
        return thread

    def tick(self, now: int) -> int:
        """Beat's periodic work: send due timers, lost jobs and parked jobs that can run now,
        fire due cron triggers, send the archiver its job and drop from Redis what it has
        archived."""
        from app.cron import fire_due_crons

        if now - self._last_sync >= RESYNC_MS:
            self.sync_local()
        released = self.queue.release_due(now)
        archive = self.archiver.due_job(now)
        if archive is not None:
            self.queue.enqueue(archive, now, now)
        self.archiver.drop_due(now)
        released += self.executor.slots.tick(now)  # waiters whose slot holders died
        fire_due_crons(self.registry, self.store, self.runner, now)
        return released
