"""Reads that answer "why is this run not running?" and "is the queue moving?" (app/why.py
and the Workers page build their answers on them). Read-only: plain commands, no script.

    run_jobs(run_id)          the run's queued jobs: owner (lease token, 'parked', 'deferred',
                              'woken' or none), send-by time, handler failures
    jobs_ahead(send_by)       unleased jobs sent by an earlier time: what a job queues behind
    queue_stats(now)          every queued job: how many, leased, overdue, the oldest overdue
    waiting(now, resend_ms)   jobs nobody holds whose time has come, oldest first, each with
                              when it became due: what waits for a worker
    wait_position(c, job)     a parked job's place in a concurrency wait list, slots in use
    throttled_until(run_id)   the run's throttled start time, if it has one
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from app.models import Job, JobKind
from app.state.keys import RUN_JOB_SEPARATOR, SlotKeys
from app.state.store import Store

MAX_RUN_JOBS = 50
"""A run has a handful of jobs (start or edge, sleep or timeout timers); more are not read."""
MAX_WAITING_READ = 500
"""Jobs `waiting` reads (the earliest send-by times first): a deeper backlog is counted
from its oldest part only."""


@dataclass(frozen=True)
class QueuedJob:
    job: Job
    owner: str
    """A lease token, 'parked', 'deferred', 'woken', or "" (nobody holds it)."""
    lease_until: int
    """The lease deadline (ms); 0 when not leased."""
    send_by: int | None
    """When the tick (re)sends it (ms): its due time for a timer, a deadline for a lease."""
    failures: int


@dataclass(frozen=True)
class QueueStats:
    jobs: int
    """Every job in the queue (timers included)."""
    leased: int
    """Jobs a worker holds now (running), parked and deferred ones included."""
    overdue: int
    """Jobs whose send-by time passed: nobody started them in time (or a lease ran out)."""
    oldest_overdue_at: int | None
    """The earliest such send-by time (ms)."""


@dataclass(frozen=True)
class WaitingJob:
    job: Job
    since: int
    """When it became due (ms): the record's `due_at` (app/state/jobs.py `job_record`); a
    record without one (written by a script that does not set it) counts from its send-by
    time less the resend slack, when the job was last sent."""


@dataclass(frozen=True)
class Waiting:
    jobs: list[WaitingJob]
    """Oldest first."""
    complete: bool
    """False when more jobs than MAX_WAITING_READ were due: `jobs` holds the oldest read."""


@dataclass(frozen=True)
class WaitPosition:
    ahead: int
    """Jobs before this one in the wait list."""
    waiting: int
    """Jobs in the wait list."""
    holders: int
    """Jobs holding a slot now."""


class Diagnosis:
    """Read-only verbs over the job, slot and throttle keys of a `Store`."""

    def __init__(self, store: Store) -> None:
        self._client = store._client
        self._keys = store.keys
        self._slots = SlotKeys(store.keys.prefix)

    def run_jobs(self, run_id: str) -> list[QueuedJob]:
        prefix = f"{run_id}{RUN_JOB_SEPARATOR}"
        members = self._client.zrangebylex(
            self._keys.jobs_by_run, f"[{prefix}", f"({prefix}\xff", start=0, num=MAX_RUN_JOBS
        )
        ids = [member[len(prefix) :] for member in members]
        if not ids:
            return []
        k = self._keys
        pipe = self._client.pipeline(transaction=False)
        pipe.hmget(k.jobs, ids)
        pipe.hmget(k.job_owners, ids)
        pipe.hmget(k.job_leases, ids)
        pipe.hmget(k.job_failures, ids)
        for job_id in ids:
            pipe.zscore(k.jobs_due, job_id)
        raws, owners, leases, failures, *dues = pipe.execute()
        out = []
        for raw, owner, lease, failed, due in zip(
            raws, owners, leases, failures, dues, strict=True
        ):
            if raw is None:
                continue  # finished between the reads
            out.append(
                QueuedJob(
                    job=Job.model_validate_json(raw),
                    owner=owner or "",
                    lease_until=int(lease or 0),
                    send_by=None if due is None else int(due),
                    failures=int(failed or 0),
                )
            )
        return out

    def jobs_ahead(self, send_by: int) -> int:
        """Jobs due to be sent before `send_by`: those a worker takes first."""
        return int(self._client.zcount(self._keys.jobs_due, "-inf", f"({send_by}"))

    def queue_stats(self, now: int) -> QueueStats:
        k = self._keys
        pipe = self._client.pipeline(transaction=False)
        pipe.hlen(k.jobs)
        pipe.hlen(k.job_owners)
        pipe.zcount(k.jobs_due, "-inf", f"({now}")
        pipe.zrange(k.jobs_due, 0, 0, withscores=True)
        jobs, leased, overdue, first = pipe.execute()
        oldest = int(first[0][1]) if first and int(first[0][1]) < now else None
        return QueueStats(int(jobs), int(leased), int(overdue), oldest)

    def waiting(self, now: int, resend_ms: int, limit: int = MAX_WAITING_READ) -> Waiting:
        """Jobs that wait for a worker: nobody holds them (no lease; not parked or deferred
        by flow control: those wait for a slot, not a worker) and they became due by `now`.
        A job sent to Celery has send-by `due + resend_ms` (later after a resend), a timer
        not yet released its due time, so every due one has send-by <= now + resend_ms."""
        k = self._keys
        ids = self._client.zrangebyscore(
            k.jobs_due, "-inf", now + resend_ms, start=0, num=limit, withscores=True
        )
        if not ids:
            return Waiting([], True)
        names = [job_id for job_id, _ in ids]
        pipe = self._client.pipeline(transaction=False)
        pipe.hmget(k.jobs, names)
        pipe.hmget(k.job_owners, names)
        raws, owners = pipe.execute()
        found = []
        for (_, send_by), raw, owner in zip(ids, raws, owners, strict=True):
            if raw is None or (owner is not None and owner != "woken"):
                continue
            record = json.loads(raw)
            job = Job.model_validate(record)
            since = _since(job, record.get("due_at"), owner, int(send_by), now, resend_ms)
            if since is not None and since <= now:
                found.append(WaitingJob(job, since))
        found.sort(key=lambda waiting: waiting.since)
        return Waiting(found, len(ids) < limit)

    def wait_position(self, constraint: str, job_id: str) -> WaitPosition | None:
        """None when the job is not in the constraint's wait list."""
        pipe = self._client.pipeline(transaction=False)
        pipe.zrank(self._slots.waiters(constraint), job_id)
        pipe.zcard(self._slots.waiters(constraint))
        pipe.zcard(self._slots.slots(constraint))
        rank, waiting, holders = pipe.execute()
        if rank is None:
            return None
        return WaitPosition(int(rank), int(waiting), int(holders))

    def throttled_until(self, run_id: str) -> int | None:
        raw = self._client.get(self._slots.ticket(run_id))
        return None if raw is None else int(raw)


_FLOW_TIMERS = (JobKind.DEBOUNCE, JobKind.BATCH)
"""Timers the flow scripts write without `due_at`: their send-by is their due time until
they are released."""


def _since(
    job: Job, due_at: object, owner: str | None, send_by: int, now: int, resend_ms: int
) -> int | None:
    """When a job nobody holds began to wait for a worker, or None when that is not known
    yet. A woken job (let out of a concurrency wait list, sent again) waits from its wake-up
    (its send-by less the resend slack), not from when it was first due."""
    if owner != "woken" and isinstance(due_at, int | float) and not isinstance(due_at, bool):
        return int(due_at)
    if job.kind in _FLOW_TIMERS and owner is None and send_by > now:
        return None  # not yet released, or released and not yet overdue: unknown
    return send_by - resend_ms
