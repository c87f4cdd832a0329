"""What the store's verbs take and return: plain dataclasses, no Redis.

`Store` (`store.py`) re-exports the run, event and paging records; the flow-control results
are re-exported by `flow.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

from app.models import JSON, Job, Pause


@dataclass
class NewRun:
    run_id: str
    function_id: str
    events: list[dict[str, JSON]]
    """The triggering events as sent to the function (wire form)."""
    event_ids: list[str]
    """Internal ids of those events (links run <-> event for the API)."""
    created_at: int
    idempotency_key: str | None = None
    """`<function id>:<key>`; a second create with the same key within the TTL is refused."""
    idempotency_ttl_ms: int = 86_400_000
    correlation_id: str | None = None
    """Set when this run was started by step.invoke; copied into its finish event."""
    original_run_id: str | None = None
    """Set on a rerun or replay: the run it was made from."""
    memoized: MemoizedSteps | None = None
    """A replay's steps, memoized from the start (they are not executed again)."""


@dataclass(frozen=True)
class QueuedJob:
    """A job to write with a state change, and when the tick (re)sends it if nobody has
    begun it (see `Store.enqueue_job`)."""

    job: Job
    send_by: int
    due_at: int
    """When it should run (the queue sends it with a countdown if that is soon)."""
    soon: bool
    """Due within the queue's ETA horizon: the caller sends it to Celery once written."""


@dataclass
class MemoizedSteps:
    """Steps a run has memoized, in stack (completion) order, with their history records."""

    stack: list[str]
    steps: dict[str, JSON]
    """Memo by hashed step id."""
    history: dict[str, dict[str, JSON]]
    """History record by hashed step id (those without one are left out)."""


@dataclass
class RunState:
    """Everything the executor needs to call a function."""

    run_id: str
    function_id: str
    status: str
    events: list[dict[str, JSON]]
    steps: dict[str, JSON]
    """Memoized values by hashed step id (only those on the stack)."""
    stack: list[str]
    disable_immediate_execution: bool
    created_at: int
    started_at: int | None
    correlation_id: str | None
    kinds: dict[str, str] = field(default_factory=dict)
    """Recorded kind (opcode name: StepRun, Sleep, ...) of each memoized step, from history."""


@dataclass
class SaveResult:
    status: Literal["created", "identical", "different", "ended"]
    """created: this call wrote it. identical: the same bytes were there (a retry of ours).
    different: another writer won. ended: the run is finished or gone; nothing written."""
    memo: JSON = None
    """The value now stored (the existing one unless created)."""
    pending: int = 0
    """Parallel steps still pending after this save."""


@dataclass
class ConsumeResult:
    won: bool
    """True for exactly one consumer of a pause, whatever the race."""
    pause: Pause | None
    pending: int = 0
    resumed: bool = False
    """The resume job passed to `consume_pause` was created (the caller sends it)."""


@dataclass
class RunView:
    """A run as the API shows it."""

    run_id: str
    function_id: str
    status: str
    event_ids: list[str]
    created_at: int
    started_at: int | None
    ended_at: int | None
    output: JSON = None
    error: JSON = None
    steps: list[dict[str, JSON]] = field(default_factory=list)
    """Step history records in first-seen order (see `record_step`)."""
    original_run_id: str | None = None
    """Set on a rerun or replay: the run it was made from."""
    logs: list[dict[str, JSON]] = field(default_factory=list)
    """`ctx.logger` lines ({ts, level, message, step, step_id}), oldest first (`get_run`
    only; see app/state/run_logs.py)."""
    logs_dropped: int = 0
    """Lines not kept over the per-run cap."""


@dataclass(frozen=True)
class NewEvent:
    """An event to store (`Store.ingest_events`), in wire form with defaults filled."""

    internal_id: str
    event: dict[str, JSON]
    dedupe: Literal["user", "engine", ""] = ""
    """Dedupe on `event["id"]` in the users' namespace, the engine's, or not at all."""
    must_process: bool = False
    """Queue it even when no trigger or pause listens (an invoke, an invoke's finish)."""


@dataclass(frozen=True)
class BrokerMessage:
    """A job's message for the broker, pushed by the state script that creates the job (so
    the job and its message are written at once): the Redis list it goes to and its bytes.
    `app/queue.py` builds it with Celery's and kombu's own code; state never looks inside."""

    list_key: str
    payload: str


@dataclass(frozen=True)
class Ingested:
    """What `ingest_events` did: each event's internal id (the first copy's for a
    duplicate) and the one job that processes the new events something listens to."""

    ids: list[str]
    job: Job | None
    idle: int = 0
    """How many new events were stored without a job (nothing listens to them)."""
    sent: bool = False
    """The job's broker message was pushed with it (nothing left to send)."""


@dataclass
class EventRecord:
    internal_id: str
    received_at: int
    event: dict[str, JSON]


T = TypeVar("T")

Position = tuple[int, str]
"""Where a page ended: (score, member) of its last item; the next page starts after it."""


@dataclass(frozen=True)
class RunCriteria:
    """Which runs a page, search or count selects (each field None: any), the same in Redis
    and in the history store."""

    function_id: str | None = None
    status: str | None = None
    created_after: int | None = None
    """Created at or after (ms)."""
    created_before: int | None = None
    """Created before (ms)."""


@dataclass(frozen=True)
class EventCriteria:
    """Which events a page or search selects (each field None: any)."""

    name: str | None = None
    received_after: int | None = None
    """Received at or after (ms)."""
    received_before: int | None = None
    """Received before (ms)."""

    def check_unnamed(self) -> None:
        """Pages of every event (`page_events`) walk one index of all names: selecting by
        name is a search's work."""
        if self.name is not None:
            raise ValueError("page_events reads every event; select by name with search_events")


ANY_RUN = RunCriteria()
ANY_EVENT = EventCriteria()


@dataclass
class Page(Generic[T]):
    items: list[T]
    next: Position | None
    """The last item's position when more items follow, else None."""


@dataclass
class SearchPage(Generic[T]):
    """A page of a filtered search, which looks at a bounded number of items per request.

    `next` is where to continue (None: nothing more). `reached` is how far the search looked:
    every match at a position >= `reached` is in `items` (None: it looked at everything).
    `partial` says it stopped at its bound before finding a full page."""

    items: list[T]
    next: Position | None
    reached: Position | None = None
    partial: bool = False


# --- flow control (`flow.py`) -------------------------------------------------------------


@dataclass(frozen=True)
class RateLimitResult:
    admitted: bool
    repeat: bool = False
    """Admitted earlier for the same event (nothing counted now)."""
    retry_at: int = 0
    """When limited: when the next run would be admitted (ms)."""


@dataclass(frozen=True)
class DebounceResult:
    code: Literal["created", "updated", "ignored"]
    debounce_id: str
    due: int
    """When the run starts if no further event arrives (ms)."""


@dataclass(frozen=True)
class DebounceFire:
    code: Literal["fired", "rescheduled", "gone"]
    function_id: str = ""
    event_id: str = ""
    event: dict[str, JSON] | None = None
    due: int = 0


@dataclass(frozen=True)
class BatchAppend:
    code: Literal["appended", "full", "duplicate"]
    batch_id: str
    size: int
    full_job: Job | None = None
    """Set with "full": the job the caller sends so the run starts now."""


@dataclass(frozen=True)
class BatchStart:
    function_id: str
    event_ids: list[str]
    events: list[dict[str, JSON]]


@dataclass(frozen=True)
class SingletonDecision:
    code: Literal["start", "skip"]
    run_id: str
    """The run to create (start)."""
    other: str
    """start: the live holder this run replaces (mode cancel), or "". skip: the holder."""


@dataclass(frozen=True)
class SlotRelease:
    """The concurrency slots a job gives back in the script that stops it (lua/suspend.lua,
    lua/finish_run.lua), as lua/slots_release.lua takes them. Times in ms."""

    constraints: Sequence[tuple[str, int]]
    """(constraint name, limit >= 1) of each slot the job holds."""
    now: int
    slot_lease_ms: int
    """A woken waiter's slot is reserved until now + this."""
    resend_ms: int
    """A woken waiter's send-by is now + this."""


@dataclass(frozen=True)
class SlotAcquire:
    """The concurrency slots a woken sleep job takes in its wake's own round trip
    (`Store.wake_runs`), as lua/slots_acquire.lua takes them. Times in ms."""

    job_id: str
    constraints: Sequence[tuple[str, int]]
    """(constraint name, limit >= 1) of each constraint of the job's run."""
    score: int
    """The job's place in the wait lists (lower starts first)."""
    now: int
    slot_lease_ms: int
    resend_ms: int
    park_ms: int
    """A parked job's send-by (a safety net), from now."""


@dataclass(frozen=True)
class RunEnd:
    """A run's end as its own job makes it (`Store.end_runs`): the job (the run's only one,
    guessed) goes with the run, the function's last unsaved `steps` (step, memo, info; each
    duration in `observed`) are saved first, its lifecycle `events` stored with their job."""

    run_id: str
    function_id: str
    job_id: str
    status: str
    output: JSON
    error: JSON
    now: int
    events: Sequence[NewEvent] = ()
    send_by: int = 0
    steps: Sequence[tuple[str, JSON, dict[str, JSON]]] = ()
    observed: Sequence[tuple[str, float] | None] = ()
    release: SlotRelease | None = None
    """The concurrency slots `job_id` holds, given back by the call that ends the run."""
