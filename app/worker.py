"""Running one job: lease it, keep the lease alive while working, then mark it done.

The lease is what makes crashes cheap to recover from: a job whose worker was `kill -9`'d
stops heartbeating, its lease runs out, and the next beat tick sends it again. A second copy
of a job that is still being worked on (a broker redelivery) finds the lease held and drops.

Every delivery that fails counts: one whose handler raised (`fail_job`, with backoff) and one
that died holding the lease (counted when the lease is taken over or cleared, see
lua/include/lost_delivery.lua). A run's job that failed `max_failures` times fails its run
with an `InternalError` naming the step, so a step that kills its process (OOM, segfault,
`os._exit`) cannot take a worker process down every lease period forever.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

from app import logs
from app.flow.slots import Parked
from app.models import Job, JobKind
from app.state.jobs import Lease
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


FAILURE_BACKOFF_MS = (1_000, 300_000)
"""A crashed job is retried after 1 s, 2 s, 4 s ... at most 5 min: it must not spin."""

GiveUp = Callable[[Job, str, bool], None]
"""Ends a run whose job keeps failing: (job, problem, name the step?) (see `Engine`)."""


class JobRunner:
    def __init__(
        self,
        store: Store,
        lease_seconds: float,
        handlers: dict[JobKind, Callable[[Job], None]],
        give_up: GiveUp | None = None,
        max_failures: int = 8,
    ) -> None:
        self._store = store
        self._lease_ms = int(lease_seconds * 1000)
        self._handlers = handlers
        self._give_up = give_up
        self._max_failures = max_failures
        """Failed deliveries (raised, or died holding the lease) before a run's job fails its
        run, so nothing spins forever (`STEPLINE_MAX_JOB_FAILURES`)."""
        self._leases = LeaseKeeper(store, self._lease_ms)

    def handle(self, job_id: str) -> str:
        """Run the job with this id once; returns "done", "gone", "busy", "parked" (it
        waits, still queued, for a concurrency slot or its throttled start: see app.flow),
        "failed" (retried later) or "dead" (it kept failing: its run failed)."""
        token = uuid.uuid4().hex
        now = int(time.time() * 1000)
        leased = self._store.lease_job(job_id, token, now, self._lease_ms)
        if isinstance(leased, str):
            return leased
        with self._leases.holding(job_id, token):
            outcome = self._run(job_id, token, leased)
        if outcome == "done":
            self._store.finish_job(job_id, token)
        return outcome

    def handle_each(self, job_ids: list[str]) -> dict[str, str]:
        """Run each job once, in order, as `handle` does (a message of many due timers), with
        one round trip to lease them all and one to finish those done. Each job keeps its own
        lease (renewed until the last is done) and outcome: one that fails is retried alone,
        one whose handler escapes with an error ("error") is left to its resend deadline;
        the others still run. Returns each job's outcome."""
        token = uuid.uuid4().hex
        now = int(time.time() * 1000)
        leases = self._store.lease_jobs(job_ids, token, now, self._lease_ms)
        outcomes: dict[str, str] = {}
        done: list[str] = []
        with ExitStack() as held:
            for job_id, leased in zip(job_ids, leases, strict=True):
                if not isinstance(leased, str):
                    held.enter_context(self._leases.holding(job_id, token))
            for job_id, leased in zip(job_ids, leases, strict=True):
                if isinstance(leased, str):
                    outcomes[job_id] = leased
                    continue
                try:
                    outcomes[job_id] = self._run(job_id, token, leased)
                except Exception:
                    log.exception("job failed before it could be recorded job_id=%s", job_id)
                    outcomes[job_id] = "error"
                if outcomes[job_id] == "done":
                    done.append(job_id)
            self._store.finish_jobs(done)
        return outcomes

    def _run(self, job_id: str, token: str, leased: Lease) -> str:
        """Run a job this delivery leased; "done" is left for the caller to finish."""
        job, failures = leased
        if failures:
            job = job.model_copy(update={"lost_deliveries": failures})
        with logs.bind(run_id=job.run_id, job_id=job.id):
            if failures >= self._max_failures and self._gives_up(job):
                # Earlier deliveries died holding the lease (a handler killing its process:
                # OOM, segfault, os._exit): running it again would kill this one too.
                problem = (
                    f"{failures} deliveries failed without finishing; the last ones died "
                    "without reporting an error (the process was killed: out of memory, a "
                    "crash, os._exit?)"
                )
                return self._dead(job, token, problem, name_step=failures == self._max_failures)
            try:
                self._handlers[job.kind](job)
            except Parked:
                return "parked"
            except Exception as exc:
                return self._failed(job, token, exc)
        return "done"

    def _gives_up(self, job: Job) -> bool:
        """Jobs of no run (event processing) never give up: an accepted event is never
        dropped."""
        return bool(job.run_id) and self._give_up is not None

    def _failed(self, job: Job, token: str, exc: Exception) -> str:
        """The handler raised (a bug or an outage; user errors never get here). Retry the job
        with backoff; after `max_failures` a run's job fails its run."""
        now = int(time.time() * 1000)
        failures = self._store.fail_job(job.id, token, now, *FAILURE_BACKOFF_MS)
        log.exception("job failed job_id=%s kind=%s failures=%d", job.id, job.kind, failures)
        if failures >= self._max_failures and self._gives_up(job):
            problem = f"{failures} deliveries failed; the last one: {type(exc).__name__}: {exc}"
            return self._dead(job, token, problem, name_step=True)
        return "failed"

    def _dead(self, job: Job, token: str, problem: str, *, name_step: bool) -> str:
        assert self._give_up is not None
        self._give_up(job, problem, name_step)
        self._store.finish_job(job.id, token)
        return "dead"
