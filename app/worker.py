"""Running one job: lease it, keep the lease alive while working, then mark it done.

The lease is what makes crashes cheap to recover from: a job whose worker was `kill -9`'d
stops heartbeating, its lease runs out, and the next beat tick sends it again. A second copy
of a job that is still being worked on (a broker redelivery) finds the lease held and drops.

One task, one work list (`JobRunner.work`): a job's handler returns the follow-up jobs it
created and recorded (a new run's start job, ...) instead of running them itself; the task then
runs each here, within the step budget, or sends it. Nothing nests: a handler never calls back
into the job runner. Every follow-up was written to Redis before it is returned, so a process
that dies mid-list loses nothing: the tick sends the rest when their send-by time comes.

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
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from typing import Literal, Protocol

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
        self.hold(job_id, token)
        try:
            yield
        finally:
            self.drop(job_id)

    def hold(self, job_id: str, token: str) -> None:
        """Renew this job's lease from now on, until `drop`."""
        with self._lock:
            self._held[job_id] = token
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="leases", daemon=True)
                self._thread.start()

    def drop(self, job_id: str) -> None:
        """Stop renewing this job's lease (done, or no longer ours)."""
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
                        with self._lock:  # warned once: it is not ours to renew any more
                            if self._held.get(job_id) == token:
                                del self._held[job_id]
                except Exception:
                    log.exception("lease renewal failed job_id=%s", job_id)


FAILURE_BACKOFF_MS = (1_000, 300_000)
"""A crashed job is retried after 1 s, 2 s, 4 s ... at most 5 min: it must not spin."""

GiveUp = Callable[[Job, str, bool], None]
"""Ends a run whose job keeps failing: (job, problem, name the step?) (see `Engine`)."""
Handler = Callable[[Job], Sequence[Job] | None]
"""Runs one job; returns the follow-up jobs it recorded but did not send (run here or sent
by `JobRunner`), or None."""


class Done(list[Job]):
    """What a handler returns when the state change that ended or suspended its run also
    dropped the job itself (lua/finish_run.lua, lua/suspend.lua), or found it was not this
    delivery's any more: its follow-ups, and no `finish_job` is needed. `later`: that
    change is written when the message's batch closes (`Lifecycle.batched`): the job is
    still ours until then."""

    def __init__(self, jobs: Sequence[Job] = (), *, later: bool = False) -> None:
        super().__init__(jobs)
        self.later = later


Send = Callable[[Job], None]
"""Sends a recorded job to the queue (`Queue.dispatch`)."""
Prefetch = Callable[[Sequence[Job]], AbstractContextManager[object]]
"""Entered around the jobs of one message, once they are leased, with those jobs: reads
what their handlers need for all of them in one round trip (`Executor.woken`)."""

Claim = tuple[str, Lease] | Literal["gone", "busy", "parked"] | None
"""A job leased by the call that also started its run: (lease token, lease); "gone" or
"busy" as `Store.lease_job` answers; "parked": that call left it waiting (for a concurrency
slot or its throttled start, app.flow.slots); None: lease it as any job."""


class Starter(Protocol):
    """Starts a run in the same script call that leases its start job (`Runner`), so the
    work list's start of a run is one round trip (none when its creation started it)."""

    def held(self, job_id: str) -> bool:
        """Is the job leased to this task already (its run was created started)?"""
        ...

    def claim(self, job: Job) -> Claim:
        """About to run `job` here: its lease, taken with its run's start, or None."""
        ...

    def start(self, job_id: str, function_id: str, limits: str = "") -> Claim:
        """A start job sent here, its message naming its run's function (and, for a function
        with concurrency or throttle, its `Job.limits` JSON): its lease, taken with its
        run's admission and start, or None (lease it as any job)."""
        ...


class JobRunner:
    def __init__(
        self,
        store: Store,
        lease_seconds: float,
        handlers: dict[JobKind, Handler],
        give_up: GiveUp | None = None,
        max_failures: int = 8,
        *,
        send: Send | None = None,
        budget_seconds: float = 10.0,
        task: Callable[[], AbstractContextManager[object]] = nullcontext,
        peers: int = 1,
        backlog: Callable[[], int | None] | None = None,
        starter: Starter | None = None,
        prefetch: Prefetch | None = None,
    ) -> None:
        self._store = store
        self._lease_ms = int(lease_seconds * 1000)
        self._handlers = handlers
        self._give_up = give_up
        self._max_failures = max_failures
        """Failed deliveries (raised, or died holding the lease) before a run's job fails its
        run, so nothing spins forever (`STEPLINE_MAX_JOB_FAILURES`)."""
        self._leases = LeaseKeeper(store, self._lease_ms)
        self._send = send
        self._budget_s = budget_seconds
        """How long one task keeps taking follow-up jobs off its work list (the step budget,
        `STEPLINE_STEP_BUDGET_SECONDS`); past it the rest are sent."""
        self._task = task
        """Entered once per task around all its jobs (the registry's pinned view)."""
        self._peers = max(1, peers)
        """Processes sharing the queue (the pool's concurrency): a fan-out is shared."""
        self._backlog = backlog
        """Messages waiting in the queue (`Queue.backlog`; None: unknown)."""
        self._starter = starter
        """Starts the runs of follow-up start jobs in the call that leases them (`Runner`)."""
        self._prefetch = prefetch

    def handle(self, job_id: str, function_id: str = "", limits: str = "") -> str:
        """Run the job with this id once and send its follow-ups; returns "done", "gone",
        "busy", "parked" (it waits, still queued, for a concurrency slot or its throttled
        start: see app.flow), "failed" (retried later) or "dead" (it kept failing: its run
        failed). `function_id`: a start job's function, from its message (`Job.function_id`):
        the job is leased with its run's start (`Starter.start`), admitted under `limits`
        (`Job.limits` JSON) when its function has concurrency or throttle."""
        with self._task():
            outcome, follow = self._run(job_id, self._start(job_id, function_id, limits))
            # A follow-up leased already (its run created started) runs here: sent, it would
            # wait for its lease to run out.
            held = [job for job in follow if self._held(job)]
            for job in held:
                try:
                    _, more = self._run(job.id, self._claim(job))
                except Exception:
                    log.exception("job leased by its creation failed job_id=%s", job.id)
                    continue  # recorded: the tick sends it when its lease runs out
                follow = [*follow, *more]
        for job in follow:
            if job not in held:
                self._dispatch(job)
        return outcome

    def _claim(self, job: Job) -> Claim:
        return self._starter.claim(job) if self._starter is not None else None

    def _start(self, job_id: str, function_id: str, limits: str) -> Claim:
        if not function_id or self._starter is None:
            return None
        return self._starter.start(job_id, function_id, limits)

    def work(self, job_id: str, function_id: str = "", limits: str = "") -> str:
        """A worker task: run the job, then its work list. Of each fan-out the task keeps
        its share (`_share`) and sends the rest; each kept follow-up job (recorded in Redis
        already) runs here, in order, while the task is within its budget, and adds its own
        follow-ups to the list; once the budget is spent the rest are sent. Returns the
        outcome of the task's own job (as `handle`, `function_id` and `limits` too)."""
        with self._task():
            outcome, follow = self._run(job_id, self._start(job_id, function_id, limits))
            deadline = time.monotonic() + self._budget_s
            todo: deque[Job] = deque()
            self._enlist(todo, follow)
            while todo:
                job = todo.popleft()
                # A job leased to this task already runs whatever the budget: its run is
                # marked started (sent elsewhere, it would wait for the lease to run out).
                if not self._held(job) and time.monotonic() >= deadline:
                    self._dispatch(job)
                    continue
                try:
                    _, more = self._run(job.id, self._claim(job))
                except Exception:
                    # Recorded before it was listed: the tick sends it when its send-by comes.
                    log.exception("job of the work list failed job_id=%s", job.id)
                    continue
                self._enlist(todo, more)
        return outcome

    def _enlist(self, todo: deque[Job], follow: Sequence[Job]) -> None:
        """Add a job's follow-ups to the work list: one leased already (its run was created
        started) goes first, so it starts at once; of the others the task keeps its share."""
        held = [job for job in follow if self._held(job)]
        todo.extendleft(reversed(held))
        todo.extend(self._share([job for job in follow if job not in held]))

    def _held(self, job: Job) -> bool:
        return self._starter is not None and self._starter.held(job.id)

    def _share(self, follow: Sequence[Job]) -> Sequence[Job]:
        """Of a fan-out (several follow-ups at once, e.g. the runs of a request's events),
        when the queue has less waiting than there are peers (they may be idle), keep this
        process's share (1 / peers) and send the rest now, so the pool's other processes run
        them meanwhile instead of waiting for this one. With a backlog, keep them all."""
        if len(follow) < 2 or self._peers == 1:
            return follow
        waiting = self._backlog() if self._backlog is not None else 0
        if waiting is None or waiting >= self._peers:
            return follow  # the other processes have work: sending would only cost hops
        keep = -(-len(follow) // self._peers)
        for job in follow[keep:]:
            self._dispatch(job)
        return follow[:keep]

    def _dispatch(self, job: Job) -> None:
        if self._send is None:
            log.warning("follow-up job left to the tick (no sender) job_id=%s", job.id)
            return
        try:
            self._send(job)
        except Exception:
            log.exception("follow-up job not sent job_id=%s; the tick will send it", job.id)

    def handle_each(self, job_ids: list[str]) -> dict[str, str]:
        """Run each job once, in order, as `handle` does (a message of many due timers), with
        one round trip to lease them all, one for what their handlers read (`prefetch`) and
        one to finish those done. Each job keeps its own lease (renewed until it is done,
        or, when done needs `finish_job`, until the batch is) and outcome: one that fails is
        retried alone, one whose handler escapes with an error ("error") is left to its
        resend deadline; the others still run. Their follow-ups are sent. Returns each job's
        outcome."""
        token = uuid.uuid4().hex
        now = int(time.time() * 1000)
        outcomes: dict[str, str] = {}
        follow: list[Job] = []
        with self._task():
            leases = self._store.lease_jobs(job_ids, token, now, self._lease_ms)
            done: list[str] = []
            with ExitStack() as held:
                mine = [leased for leased in leases if not isinstance(leased, str)]
                for lease in mine:
                    held.enter_context(self._leases.holding(lease.job.id, token))
                if self._prefetch is not None and mine:
                    held.enter_context(self._prefetch([lease.job for lease in mine]))
                for job_id, leased in zip(job_ids, leases, strict=True):
                    if isinstance(leased, str):
                        outcomes[job_id] = leased
                        continue
                    try:
                        outcome, more = self._exec(job_id, token, leased)
                    except Exception:
                        log.exception("job failed before it could be recorded job_id=%s", job_id)
                        outcomes[job_id] = "error"
                        self._leases.drop(job_id)
                        continue
                    outcomes[job_id] = outcome
                    if outcome == "done" and not isinstance(more, Done):
                        done.append(job_id)  # still ours until `finish_jobs`: keep renewing
                    elif not (isinstance(more, Done) and more.later):
                        self._leases.drop(job_id)  # gone with its run, or let go (retry)
                    follow.extend(more)
                self._store.finish_jobs(done)
        for job in follow:
            self._dispatch(job)
        return outcomes

    def _run(self, job_id: str, claim: Claim = None) -> tuple[str, Sequence[Job]]:
        """Lease and run the job once: (outcome, the follow-ups its handler returned).
        `claim`: the job leased already, with its run's start (`Starter.claim`)."""
        if isinstance(claim, str):
            return claim, ()
        if claim is None:
            token = uuid.uuid4().hex
            now = int(time.time() * 1000)
            leased = self._store.lease_job(job_id, token, now, self._lease_ms)
            if isinstance(leased, str):
                return leased, ()
        else:
            token, leased = claim
        with self._leases.holding(job_id, token):
            outcome, follow = self._exec(job_id, token, leased)
        if outcome == "done" and not isinstance(follow, Done):
            self._store.finish_job(job_id, token)
        return outcome, follow

    def _exec(self, job_id: str, token: str, leased: Lease) -> tuple[str, Sequence[Job]]:
        """Run a job this delivery leased: (outcome, follow-ups). "done" is left for the
        caller to finish (unless the handler answered `Done`: it finished the job itself)."""
        job, failures = leased
        job = job.model_copy(update={"lost_deliveries": failures, "lease": token})
        with logs.bind(run_id=job.run_id, job_id=job.id):
            if failures >= self._max_failures and self._gives_up(job):
                # Earlier deliveries died holding the lease (a handler killing its process:
                # OOM, segfault, os._exit): running it again would kill this one too.
                problem = (
                    f"{failures} deliveries failed without finishing; the last ones died "
                    "without reporting an error (the process was killed: out of memory, a "
                    "crash, os._exit?)"
                )
                dead = self._dead(job, token, problem, name_step=failures == self._max_failures)
                return dead, ()
            try:
                returned = self._handlers[job.kind](job)
            except Parked:
                return "parked", ()
            except Exception as exc:
                return self._failed(job, token, exc), ()
        return "done", (() if returned is None else returned)

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
