"""Store verbs for jobs: the durable queue records (Celery messages carry only their ids, and
a start job's function), leased by one worker at a time and re-sent by the beat tick when due."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Literal, NamedTuple

from app.models import Job
from app.state.base import StoreBase
from app.state.records import BrokerMessage


def job_record(job: Job, due_at: int) -> str:
    """A job's record in `<p>:jobs`: the Job's JSON with `due_at`, when it became due (ms),
    which resends do not change: how long it has waited for a worker (`Diagnosis.waiting`).
    `Job` ignores the extra key when it reads the record back."""
    return json.dumps({**job.model_dump(mode="json"), "due_at": due_at}, separators=(",", ":"))


class Lease(NamedTuple):
    """A job leased to one delivery, and how many earlier deliveries of it failed: raised
    (`fail_job`) or died holding the lease (counted when their lease was taken over)."""

    job: Job
    failures: int


class JobVerbs(StoreBase):
    """Part of `Store`: jobs."""

    def push_messages(self, messages: Sequence[BrokerMessage]) -> None:
        """Push broker messages (built by `app.queue`) onto their lists, all in one pipelined
        round trip: beat's release of many due timers. A repeat after a lost reply pushes
        them again: harmless, each job's lease lets one delivery work on it."""
        pipe = self._client.pipeline(transaction=False)
        for message in messages:
            pipe.lpush(message.list_key, message.payload)
        pipe.execute()

    def list_lengths(self, list_keys: Sequence[str]) -> list[int]:
        """How many messages wait in each of these broker lists (named by `app.queue`), in
        one pipelined round trip."""
        pipe = self._client.pipeline(transaction=False)
        for key in list_keys:
            pipe.llen(key)
        return [int(n) for n in pipe.execute()]

    def enqueue_job(self, job: Job, due_at: int, send_by: int) -> bool:
        """Create the job unless it exists or ran in the last 24 h (tombstone). `send_by` is
        when the tick should (re)send it if nobody has started it. Returns True if created.

        False also when the job's run has ended. `due_at` is kept in the record
        (`job_record`): the Workers page's age of the oldest waiting job."""
        record = job_record(job, due_at)
        return self._scripts.enqueue_job(job.id, job.run_id, record, send_by) == 1

    def begin_job(
        self, job_id: str, token: str, now: int, lease_ms: int
    ) -> Job | Literal["gone", "busy"]:
        """Lease the job for `token`. "gone": done or dropped. "busy": another holder's lease
        is still live."""
        leased = self.lease_job(job_id, token, now, lease_ms)
        return leased if isinstance(leased, str) else leased.job

    def lease_job(
        self, job_id: str, token: str, now: int, lease_ms: int
    ) -> Lease | Literal["gone", "busy"]:
        """As `begin_job`, with the count of the job's earlier failed deliveries. Taking over
        an expired lease counts its holder as a failed delivery (it died or lost Redis)."""
        code, raw, failures = self._scripts.begin_job(job_id, token, now, lease_ms)
        if code == "ok":
            return Lease(Job.model_validate_json(raw), failures)
        return code

    def lease_jobs(
        self, job_ids: list[str], token: str, now: int, lease_ms: int
    ) -> list[Lease | Literal["gone", "busy"]]:
        """`lease_job` for each job, all for one token, in one round trip."""
        return [
            Lease(Job.model_validate_json(raw), failures) if code == "ok" else code
            for code, raw, failures in self._scripts.begin_jobs(job_ids, token, now, lease_ms)
        ]

    def renew_job(self, job_id: str, token: str, now: int, lease_ms: int) -> bool:
        """Extend `token`'s lease. False if the job is gone or another token holds it."""
        return self._scripts.renew_job(job_id, token, now, lease_ms)

    def finish_job(self, job_id: str, token: str) -> None:
        """Delete the job and leave a 24 h tombstone so the same id is never enqueued again.
        The token is not checked: whoever finishes it, the work is done."""
        self._scripts.finish_job(job_id)

    def finish_jobs(self, job_ids: list[str]) -> None:
        """`finish_job` for each job, in one round trip."""
        if job_ids:
            self._scripts.finish_jobs(job_ids)

    def fail_job(self, job_id: str, token: str, now: int, base_ms: int, cap_ms: int) -> int:
        """The handler of a job we lease raised: count it, let go of the lease and schedule
        the job again after base * 2^(failures-1) ms (at most `cap_ms`). Returns the failure
        count (0: the job is gone; -1: another token holds it)."""
        return self._scripts.fail_job(job_id, token, now, base_ms, cap_ms)

    def next_send_by(self) -> int | None:
        """The earliest send-by time (ms) of any job (a timer's due time, a resend deadline,
        a lease's end), or None when no job waits: when the tick has work next."""
        first = self._client.zrange(self._keys.jobs_due, 0, 0, withscores=True)
        return int(first[0][1]) if first else None

    def release_due(self, now: int, resend_after_ms: int, limit: int) -> list[Job]:
        """Jobs whose send-by time has passed (timers now due, sent jobs never started,
        expired leases): push their send-by to now + resend_after_ms and return them."""
        return [job for job, _ in self.release_upcoming(now, resend_after_ms, limit, 0)]

    def release_upcoming(
        self,
        now: int,
        resend_after_ms: int,
        limit: int,
        lookahead_ms: int,
        recent_ms: int | None = None,
    ) -> list[tuple[Job, int]]:
        """As `release_due`, also taking unleased jobs due within `lookahead_ms`; each with
        its due time, so the caller can send it to fire exactly then. With `recent_ms`, what
        fell due since now - recent_ms goes first (ahead of a backlog of older resends)."""
        raw = self._scripts.release_due(now, resend_after_ms, limit, lookahead_ms, recent_ms)
        return [(Job.model_validate_json(item), due) for item, due in raw]

    def count_jobs(self) -> int:
        return int(self._client.hlen(self._keys.jobs))
