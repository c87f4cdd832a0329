"""Wiring: one `Engine` per process holds the stages of the data flow.

    event API ──► runner ──► queue ──► (Celery) ──► executor ──► driver
                    │                                  │
                    └──────────────► state ◄───────────┘

Nothing is built at import time; `Engine.create` builds it from `Settings`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.config import Settings
from app.functions import FunctionSet, load_functions
from app.queue import Queue, Sender, celery_sender
from app.registry import Registry
from app.state.store import Store
from app.worker import JobRunner

if TYPE_CHECKING:
    from app.drivers.base import Driver
    from app.executor import Executor
    from app.runner import Runner


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

    @staticmethod
    def now() -> int:
        return wall_clock_ms()

    @classmethod
    def create(
        cls, settings: Settings, sender: Sender | None = None, local: FunctionSet | None = None
    ) -> Engine:
        from app.drivers.http import HttpDriver
        from app.drivers.inprocess import InProcessDriver
        from app.executor import Executor
        from app.runner import Runner

        store = Store(settings.redis_url, prefix=settings.key_prefix)
        queue = Queue(store, sender or celery_sender(settings), settings)
        registry = Registry(store)
        functions = local if local is not None else load_functions(settings.functions)
        runner = Runner(store, queue, registry, settings)
        functions.install_sender(lambda events: runner.ingest(events, wall_clock_ms()))
        drivers: dict[str, Driver] = {
            "inprocess": InProcessDriver(functions),
            "http": HttpDriver(settings),
        }
        executor = Executor(store, queue, registry, runner, drivers, settings)
        from app.models import JobKind

        handlers = {
            JobKind.START: executor.run_job,
            JobKind.EDGE: executor.run_job,
            JobKind.SLEEP: executor.run_job,
            JobKind.PAUSE_TIMEOUT: executor.run_job,
            JobKind.EVENT: lambda job: runner.process_event(job.event_id, wall_clock_ms()),
        }
        jobs = JobRunner(store, settings.lease_seconds, handlers)
        engine = cls(settings, store, queue, registry, functions, runner, executor, jobs)
        engine.sync_local()
        return engine

    def sync_local(self) -> None:
        """Publish this process's in-process functions to the shared registry."""
        by_app: dict[str, list] = {}  # type: ignore[type-arg]
        for config in self.local.configs():
            by_app.setdefault(config.app_id, []).append(config)
        for app_id, configs in by_app.items():
            self.store.save_app(app_id, None, configs, self.now())

    def tick(self, now: int) -> int:
        """Beat's periodic work: send due timers and lost jobs, fire due cron triggers."""
        from app.cron import fire_due_crons

        released = self.queue.release_due(now)
        fire_due_crons(self.registry, self.store, self.runner, now)
        return released
