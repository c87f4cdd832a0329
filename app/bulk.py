"""Bulk operations: cancel or replay every run a filter selects, as a durable background job.

    POST /v1/bulk ─► Bulks.start ─► bulk record (Redis, state running) + BULK job
    worker: run_job ─► page of selected runs after the cursor (Reads.search_runs, the same
            filter language as search) ─► act on each run, record its outcome once
            ─► advance the cursor ─► ... until the budget is spent ─► queue the next BULK job

The selection is what `GET /v1/runs` would list for the same function, status, time range and
CEL filter, newest first, created before the operation started (so the runs a replay creates
are never selected again). Cancel acts on live runs (Queued, Running); replay on ended ones,
through `app/replay.py`.

Crash-safe: progress is the cursor in Redis, moved only after every run before it has its
outcome recorded. A worker killed mid-batch loses its job's lease; beat sends the job again
and it resumes from the cursor. The runs of the interrupted batch are acted on again,
idempotently: a cancelled run stays cancelled, a replay is keyed by (operation, run) so the
second one answers the first one's new run, and `lua/bulk_record.lua` counts each run once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from app.errors import BadRequest, SteplineError
from app.history.reads import Reads, SearchBounds
from app.ids import new_ulid
from app.models import JSON, Job, JobKind, RunStatus
from app.queue import Queue
from app.replay import replay
from app.runner import Runner
from app.search import Filter, parse
from app.state.bulk import BulkRecord, BulkStore
from app.state.records import Position, RunCriteria, RunView, SearchPage

log = logging.getLogger("stepline.bulk")

Action = Literal["cancel", "replay"]
ACTIONS: tuple[Action, ...] = ("cancel", "replay")
BATCH = 100
"""Runs selected per page (each page then advances the cursor once)."""
BUDGET_SECONDS = 10.0
"""How long one BULK job works before it queues the next one (and lets other jobs run)."""
COUNT_EVALUATE = 2_000
"""A dry run (and the estimate of a start) looks at most at this many candidates per store
and status where SQL cannot count the filter itself (cel-python takes milliseconds each, and
the request must answer well within gunicorn's timeout): the count is then a lower bound."""
LIVE = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)
ENDED = (RunStatus.COMPLETED.value, RunStatus.FAILED.value, RunStatus.CANCELLED.value)


@dataclass(frozen=True)
class Spec:
    action: Action
    function_id: str | None = None
    status: str | None = None
    created_after: int | None = None
    created_before: int | None = None
    filter: str | None = None

    def to_json(self) -> dict[str, JSON]:
        return {
            "action": self.action,
            "function_id": self.function_id,
            "status": self.status,
            "created_after": self.created_after,
            "created_before": self.created_before,
            "filter": self.filter,
        }

    @staticmethod
    def from_json(raw: dict[str, JSON]) -> Spec:
        action = raw["action"]
        assert action in ACTIONS
        return Spec(
            action=action,
            function_id=_opt_str(raw.get("function_id")),
            status=_opt_str(raw.get("status")),
            created_after=_opt_int(raw.get("created_after")),
            created_before=_opt_int(raw.get("created_before")),
            filter=_opt_str(raw.get("filter")),
        )

    def search(self) -> Filter | None:
        return parse(self.filter, "runs") if self.filter else None

    def where(self, status: str | None) -> RunCriteria:
        """The runs the spec selects, in `status`."""
        return RunCriteria(self.function_id, status, self.created_after, self.created_before)

    def statuses(self) -> tuple[str, ...]:
        """The statuses the action applies to (of those the spec asks for)."""
        wanted = LIVE if self.action == "cancel" else ENDED
        if self.status is None:
            return wanted
        return (self.status,) if self.status in wanted else ()


def validate(spec: Spec) -> None:
    """A spec the action can apply to, or BadRequest naming the problem."""
    if spec.status is not None and not spec.statuses():
        allowed = ", ".join(LIVE if spec.action == "cancel" else ENDED)
        raise BadRequest(
            f"{spec.action} applies to runs that are {allowed}, not {spec.status}", field="status"
        )
    if (
        spec.created_after is not None
        and spec.created_before is not None
        and spec.created_after >= spec.created_before
    ):
        raise BadRequest("after must be before before", field="after")
    spec.search()  # a bad filter raises BadRequest(field="filter")


def job_for(bulk_id: str, part: int) -> Job:
    """The BULK job of an operation's `part`-th stretch (deterministic: queued once)."""
    return Job(id=f"bulk:{bulk_id}:{part}", kind=JobKind.BULK, run_id="", step=bulk_id)


class Bulks:
    def __init__(
        self,
        store: BulkStore,
        reads: Reads,
        queue: Queue,
        runner: Runner,
        cancel: Callable[[str, int], bool],
        clock: Callable[[], int],
    ) -> None:
        self._runner = runner
        self.store = store
        self._reads = reads
        self._queue = queue
        self._cancel = cancel
        self._clock = clock

    # --- the API --------------------------------------------------------------------------
    def count(self, spec: Spec) -> tuple[int, bool]:
        """How many runs the operation would act on now (dry run), and whether the count is
        exact (a filter SQL cannot say whole is evaluated on a bounded set: a lower bound)."""
        search = spec.search()
        total, exact = 0, True
        for status in spec.statuses():
            live, live_exact = self._count_live(spec, search, status)
            total += live
            exact = exact and live_exact
            if status in ENDED:
                archived, archived_exact = self._reads.history.count_runs(
                    search, spec.where(status), evaluate=COUNT_EVALUATE
                )
                total += archived
                exact = exact and archived_exact
        return total, exact

    def _count_live(self, spec: Spec, search: Filter | None, status: str) -> tuple[int, bool]:
        """Runs in Redis (not yet in the history store, for ended ones) that match."""
        counted, cursor, looked = 0, None, 0
        while looked < COUNT_EVALUATE:
            page = self._reads.store.search_runs(
                search, BATCH, spec.where(status), after=cursor, scan=BATCH * 5
            )
            fresh = [view.run_id for view in page.items]
            if status in ENDED and fresh:
                fresh = self.store.not_archived(fresh)
            counted += len(fresh)
            looked += BATCH * 5
            if page.next is None:
                return counted, True
            cursor = page.next
        return counted, False

    def start(self, spec: Spec, now: int) -> tuple[BulkRecord, Job]:
        """Record the operation and answer it with its first job (the caller queues it).
        Runs created from now on are not selected (replays would select themselves)."""
        validate(spec)
        estimate, _ = self.count(spec)
        before = now + 1 if spec.created_before is None else min(spec.created_before, now + 1)
        fixed = Spec(
            spec.action, spec.function_id, spec.status, spec.created_after, before, spec.filter
        )
        bulk_id = new_ulid(now)
        self.store.create(bulk_id, fixed.to_json(), estimate, now)
        record = self.store.get(bulk_id)
        assert record is not None
        log.info(
            "bulk started bulk_id=%s action=%s estimate=%d",
            bulk_id,
            spec.action,
            estimate,
            extra={"bulk_id": bulk_id, "action": spec.action},
        )
        return record, job_for(bulk_id, 0)

    # --- the worker -----------------------------------------------------------------------
    def run_job(self, job: Job) -> None:
        """Work on the operation until it is done or stopped, or the budget is spent (then
        queue its next job)."""
        bulk_id, part = job.step, int(job.id.rsplit(":", 1)[1])
        deadline = time.monotonic() + BUDGET_SECONDS
        while True:
            record = self.store.get(bulk_id)
            if record is None or record.state != "running":
                return
            if self.run_batch(record) != "running":
                return
            if time.monotonic() >= deadline:  # at least one batch per job: always progress
                now = self._clock()
                self._queue.enqueue(job_for(bulk_id, part + 1), now, now)
                return

    def run_batch(self, record: BulkRecord) -> str:
        """Act on the next page of selected runs; returns the operation's state after it."""
        spec = Spec.from_json(record.spec)
        page = self._select(spec, record.cursor)
        wanted = spec.statuses()
        for view in page.items:
            if view.status not in wanted:
                continue
            if self.store.state(record.id) != "running":
                return "stopped"
            self._act(record.id, spec, view)
        last: Position | None = page.next
        if last is None and page.items:
            last = (page.items[-1].created_at, page.items[-1].run_id)
        return self.store.advance(
            record.id, last or record.cursor, self._clock(), finished=page.next is None
        )

    def _select(self, spec: Spec, cursor: Position | None) -> SearchPage[RunView]:
        """The next page of runs the filter selects: live ones only for a cancel (every
        run that can be cancelled is in Redis), both stores for a replay."""
        where = spec.where(spec.status)
        if spec.action == "cancel":
            scan = SearchBounds().live_scan
            return self._reads.store.search_runs(
                spec.search(), BATCH, where, after=cursor, scan=scan
            )
        return self._reads.search_runs(spec.search(), BATCH, where, after=cursor)

    def _act(self, bulk_id: str, spec: Spec, view: RunView) -> None:
        if self.store.outcome(bulk_id, view.run_id) is not None:
            return  # handled before a crash: its outcome is recorded
        now = self._clock()
        if spec.action == "cancel":
            if self._cancel(view.run_id, now):
                self.store.record(bulk_id, view.run_id, "done", "cancelled")
                return
            current = self._reads.get_run(view.run_id)
            status = current.status if current is not None else "gone"
            outcome = "done" if status == RunStatus.CANCELLED.value else "skipped"
            self.store.record(bulk_id, view.run_id, outcome, f"already {status}")
            return
        try:
            made = replay(
                self._reads,
                self._runner,
                view.run_id,
                now,
                idempotency_key=f"bulk-{bulk_id}-{view.run_id}",
            )
        except SteplineError as exc:
            self.store.record(bulk_id, view.run_id, "failed", exc.message)
            return
        self.store.record(bulk_id, view.run_id, "done", made.run_id)


def _opt_str(value: JSON) -> str | None:
    return value if isinstance(value, str) and value else None


def _opt_int(value: JSON) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
