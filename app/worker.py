"""Running one job: lease it, keep the lease alive while working, then mark it done.

The lease is what makes crashes cheap to recover from: a job whose worker was `kill -9`'d
stops heartbeating, its lease runs out, and the next beat tick sends it again. A second copy
of a job that is still being worked on (a broker redelivery) finds the lease held and drops.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from app.flow.slots import Parked
from app.models import Job, JobKind
from app.state.store import Store

log = logging.getLogger("stepline.worker")


class LeaseKeeper:
    """One thread per process that renews the leases of the jobs this process is running,
    every third of the lease length (no thread per job: jobs are often a millisecond long)."""

    def __init__(self, store: Store, lease_ms: int) -> None:
        self._store = store
        self._lease_ms = lease_ms
        self._held: dict[str, str] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextmanager
    def holding(self, job_id: str, token: str) -> Iterator[None]:
        with self._lock:
            self._held[job_id] = token
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="leases", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._held.pop(job_id, None)

    def _loop(self) -> None:
        while True:
            time.sleep(self._lease_ms / 3000)
            with self._lock:
                held = list(self._held.items())
            now = int(time.time() * 1000)
            for job_id, token in held:
                try:
                    if not self._store.renew_job(job_id, token, now, self._lease_ms):
                        log.warning("lease lost job_id=%s", job_id)
                except Exception:
                    log.exception("lease renewal failed job_id=%s", job_id)


class JobRunner:
    def __init__(
        self, store: Store, lease_seconds: float, handlers: dict[JobKind, Callable[[Job], None]]
    ) -> None:
        self._store = store
        self._lease_ms = int(lease_seconds * 1000)
        self._handlers = handlers
        self._leases = LeaseKeeper(store, self._lease_ms)

    def handle(self, job_id: str) -> str:
        """Run the job with this id once; returns "done", "gone", "busy" or "parked" (it
        waits, still queued, for a concurrency slot or its throttled start: see app.flow)."""
        token = uuid.uuid4().hex
        now = int(time.time() * 1000)
        job = self._store.begin_job(job_id, token, now, self._lease_ms)
        if isinstance(job, str):
            return job
        with self._leases.holding(job_id, token):
            try:
                self._handlers[job.kind](job)
            except Parked:
                return "parked"
        self._store.finish_job(job_id, token)
        return "done"
