"""The nouns of Stepline: events, functions, runs, steps, pauses and jobs.

Wire-facing shapes (events, function configs) are pydantic models so that what arrives over
HTTP is validated once at the edge. Hot-path records (memos, jobs) stay plain JSON-able data.
Every status value is stored verbatim in Redis and shown verbatim by the API.
"""

from __future__ import annotations

import enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JSON = Any
"""Any JSON value (dict, list, str, int, float, bool or None)."""


class RunStatus(enum.StrEnum):
    """A run's status, named as Inngest names them."""

    QUEUED = "Queued"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"

    @property
    def ended(self) -> bool:
        return self in (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED)


class Event(BaseModel):
    """An event as the SDKs send it. `id` is the user's idempotency id (may be empty)."""

    model_config = ConfigDict(extra="ignore")

    name: str
    data: dict[str, JSON] = Field(default_factory=dict)
    id: str = ""
    ts: int = 0
    user: dict[str, JSON] = Field(default_factory=dict)
    v: str | None = None

    def to_wire(self) -> dict[str, JSON]:
        """The event as sent to functions (always with `user`, `v` only when set)."""
        out: dict[str, JSON] = {
            "name": self.name,
            "data": self.data,
            "id": self.id,
            "ts": self.ts,
            "user": self.user,
        }
        if self.v is not None:
            out["v"] = self.v
        return out


class Trigger(BaseModel):
    """One trigger: an event name (wildcards allowed) with an optional CEL expression, or a cron."""

    model_config = ConfigDict(extra="ignore")

    event: str | None = None
    expression: str | None = None
    cron: str | None = None
    jitter: str | None = None
    """Cron only: each scheduled time fires up to this much later (a duration such as "30s"),
    at an offset fixed per function and time, so many crons on one schedule spread out."""


DriverKind = Literal["inprocess", "http", "connect"]


class FunctionConfig(BaseModel):
    """A function as the engine knows it, whichever driver runs it.

    `id` is the fully qualified slug `<app id>-<fn id>`, as Inngest names it. Flow-control options
    are kept in the shape the SDKs register them (`concurrency`, `rateLimit`, ...) under `options`.
    """

    model_config = ConfigDict(extra="ignore")

    id: str
    name: str
    app_id: str
    triggers: list[Trigger]
    retries: int = 4
    driver: DriverKind = "inprocess"
    url: str | None = None
    options: dict[str, JSON] = Field(default_factory=dict)

    @property
    def max_attempts(self) -> int:
        return self.retries + 1


class StepKind(enum.StrEnum):
    """What a step is, as recorded in run history (opcode names of the protocol)."""

    RUN = "StepRun"
    SLEEP = "Sleep"
    WAIT_FOR_EVENT = "WaitForEvent"
    INVOKE = "InvokeFunction"
    SEND_EVENT = "SendEvent"
    WAIT_FOR_SIGNAL = "WaitForSignal"
    AI_GATEWAY = "AIGateway"


class JobKind(enum.StrEnum):
    """One Celery task per kind of work. The values are the task names' suffixes."""

    START = "start"
    EDGE = "edge"
    SLEEP = "sleep"
    PAUSE_TIMEOUT = "pause_timeout"
    EVENT = "event"
    DEBOUNCE = "debounce"
    BATCH = "batch"
    CANCEL = "cancel"
    ARCHIVE = "archive"
    BULK = "bulk"


class StartLimits(BaseModel):
    """What a start job of a function with `concurrency` or `throttle` carries (in its record
    and its Celery message) so that its worker leases it, admits it and starts its run in one
    script call (lua/start_run.lua needs every key before it runs): the values its run's
    first event gives the flow rules, computed where the event is at hand, when the run is
    created (`app.flow.slots.start_limits`)."""

    rules: str
    """A digest of the function's flow options these were computed from: a worker whose
    registry has other options admits the job as before (`Slots.acquire`)."""
    score: int
    """Its place in the wait lists: run created_at - priority seconds * 1000."""
    constraints: list[tuple[str, int]] = Field(default_factory=list)
    """(constraint name, limit) of each concurrency constraint."""
    throttle: str = ""
    """The throttle's name (`<function>[:<key hash>]`), "" for none."""


class Job(BaseModel):
    """A unit of queued work. Its `id` is deterministic so enqueueing twice is harmless.

    Celery messages carry only `id` (and a start job's `function_id` and `limits`); the job
    itself lives in Redis until it is done.
    `step` is a hashed step id: the step to target (edge), the sleep to wake, or the step a
    pause writes to. `attempt` is 0-based and per job, as Inngest counts it.
    """

    id: str
    kind: JobKind
    run_id: str = ""
    step: str = ""
    attempt: int = 0
    pause_id: str = ""
    event_id: str = ""
    event_ids: list[str] = Field(default_factory=list)
    """An event job's events, processed together (`event_id` is the first)."""
    function_id: str = ""
    """A start job's function, carried in its Celery message (`Queue`): the worker that
    takes it leases it and starts its run in one script call (lua/start_run.lua needs the
    function's index keys before it reads the run). "" for other jobs (and start jobs
    recorded before it was carried)."""
    limits: StartLimits | None = None
    """A start job's flow-control values if its function has concurrency or throttle, also
    carried in its message; a sleep job's constraints and score if its function has
    concurrency (only in its record: its wake takes its slots in the wake's own round trip,
    `app.flow.slots.Slots.wake_acquire`); None otherwise."""
    lost_deliveries: int = Field(default=0, exclude=True)
    """How many earlier deliveries of this job died holding its lease (set by the worker
    that leased it, never stored): the executor then saves each step at once, not batched,
    so a step that kills its process is the one a poison job's error names."""
    lease: str = Field(default="", exclude=True)
    """The lease token of the delivery running this job (set by the worker that leased it,
    never stored): a state change that finishes the job with its run's (lua/suspend.lua)
    checks the job is still this delivery's."""

    @property
    def events(self) -> list[str]:
        """The event ids an event job processes."""
        return self.event_ids or ([self.event_id] if self.event_id else [])


# --- job ids: their one home (as app/state/keys.py is for Redis keys) ------------------------
# Deterministic, so creating the same work twice is harmless. Lua builds one of them too:
# lua/include/ingest.lua names an event job "event:<first internal id>".


START_SUFFIX = ":start"


def start_job(run_id: str, function_id: str, limits: StartLimits | None = None) -> Job:
    """A run's first execution (of `function_id`, see `Job.function_id`; `limits`, see
    `Job.limits`)."""
    return Job(
        id=run_id + START_SUFFIX,
        kind=JobKind.START,
        run_id=run_id,
        function_id=function_id,
        limits=limits,
    )


def start_job_run(job_id: str) -> str | None:
    """The run whose start job has this id (`start_job`); None for any other job."""
    return job_id.removesuffix(START_SUFFIX) if job_id.endswith(START_SUFFIX) else None


def resume_job(run_id: str, step: str) -> Job:
    """A run's next execution after the pause at `step` was consumed."""
    return Job(id=f"{run_id}:resume:{step}", kind=JobKind.EDGE, run_id=run_id)


def event_job(event_ids: list[str], job_id: str = "") -> Job:
    """The job that processes these events (of one request, or one run's end): named after
    the first of them unless `job_id` says otherwise (lua/include/ingest.lua may name it
    after the first event of its call, one nothing listens to)."""
    return Job(
        id=job_id or f"event:{event_ids[0]}",
        kind=JobKind.EVENT,
        event_id=event_ids[0],
        event_ids=event_ids,
    )


class Pause(BaseModel):
    """A run suspended until an event arrives (wait_for_event, invoke), a signal is sent
    (wait_for_signal: `correlation_id` is `signal:<name>`, no event) or a timeout passes.

    `expression` is CEL over `event` (the run's trigger) and `async` (the incoming event).
    `index_path`/`index_value` hold the equality the pause is indexed under, if it has one
    (`async.data.x == <literal>`), so matching never scans every pause of an event name.
    """

    id: str
    run_id: str
    step: str
    step_name: str
    kind: Literal["WaitForEvent", "InvokeFunction", "WaitForSignal", "Cancel"]
    event: str
    expression: str | None = None
    index_path: str | None = None
    index_value: str | None = None
    correlation_id: str | None = None
    trigger_event: dict[str, JSON] = Field(default_factory=dict)
    trigger_event_id: str = ""
    expires_at: int
    created_at: int
    lookback_ms: int = 0
    """wait_for_event(lookback=...): events received this long before the wait match too."""


class ConnectRequest(BaseModel):
    """One call of a function served by a Connect worker (the HTTP call's JSON body in
    `payload`), as the executor hands it to the gateways through Redis."""

    request_id: str
    app_id: str
    function_slug: str
    step_id: str
    """The targeted step's hash, or "step" for discovery (the HTTP driver's `stepId`)."""
    run_id: str
    payload: str


class ConnectReply(BaseModel):
    """A Connect worker's answer to a `ConnectRequest` (the SDKResponse, body as text).

    `status` as the SDKs map it: "done" = HTTP 200, "not_completed" = 206, "error" = 500."""

    request_id: str
    status: Literal["done", "not_completed", "error"]
    body: str
    no_retry: bool = False
    retry_after: str | None = None
    sdk_version: str = ""
    request_version: int = 0
