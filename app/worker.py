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
from collections.abc import Callable

from app.models import Job, JobKind
from app.state.store import Store

log = logging.getLogger("stepline.worker")


class Heartbeat:
    """Renews a job's lease every third of its length until stopped."""

    def __init__(self, store: Store, job_id: str, token: str, lease_ms: int) -> None:
        self._store = store
        self._job_id = job_id
        self._token = token
        self._lease_ms = lease_ms
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self._lease_ms / 3000):
            now = int(time.time() * 1000)
            try:
                if not self._store.renew_job(self._job_id, self._token, now, self._lease_ms):
                    log.warning("lease lost job_id=%s", self._job_id)
                    return
            except Exception:
                log.exception("lease renewal failed job_id=%s", self._job_id)


class JobRunner:
    def __init__(
        self, store: Store, lease_seconds: float, handlers: dict[JobKind, Callable[[Job], None]]
    ) -> None:
        self._store = store
        self._lease_ms = int(lease_seconds * 1000)
        self._handlers = handlers

    def handle(self, job_id: str) -> str:
        """Run the job with this id once; returns "done", "gone" or "busy"."""
        token = uuid.uuid4().hex
        now = int(time.time() * 1000)
        job = self._store.begin_job(job_id, token, now, self._lease_ms)
        if isinstance(job, str):
            return job
        with Heartbeat(self._store, job_id, token, self._lease_ms):
            self._handlers[job.kind](job)
        self._store.finish_job(job_id, token)
        return "done"
