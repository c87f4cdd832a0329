"""Reads that answer "why is this run not running?" and "is the queue moving?" (app/why.py
and the Workers page build their answers on them). Read-only: plain commands, no script.

    run_jobs(run_id)          the run's queued jobs: owner (lease token, 'parked', 'deferred',
                              'woken' or none), send-by time, handler failures
    jobs_ahead(send_by)       unleased jobs sent by an earlier time: what a job queues behind
    queue_stats(now)          every queued job: how many, leased, overdue, the oldest overdue
    wait_position(c, job)     a parked job's place in a concurrency wait list, slots in use
    throttled_until(run_id)   the run's throttled start time, if it has one
"""

from __future__ import annotations

from dataclasses import dataclass

from app.models import Job
from app.state.keys import RUN_JOB_SEPARATOR
from app.state.slots import SlotKeys
from app.state.store import Store

MAX_RUN_JOBS = 50
"""A run has a handful of jobs (start or edge, sleep or timeout timers); more are not read."""


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
