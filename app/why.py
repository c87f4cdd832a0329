"""Why is this run not running? One reason per queued or waiting run, with the time it is
expected to move (`GET /v1/runs/<id>` answers it as `waiting`, the run page shows it).

    explain(view, fn, diagnosis, liveness, now) ─► Reason | None  (None: ended, or executing)

What is looked at, first match wins:

    concurrency   a job of the run is parked in a wait list: "waiting for a concurrency slot
                  of key K, n ahead" (the key's value over the run's event; limit and holders)
    throttle      its start job is deferred: "throttled until T"
    steps         a step is Retrying ("retry n of m at T"), Sleeping ("sleeping until T") or
                  Waiting ("waiting for event E until T"); a failed function call waits for
                  its retry the same way
    timer         a job is due later than now: "scheduled for T"
    queue         a job is due now and nobody holds it: "queued behind N jobs", and when no
                  worker is alive "... with no live worker" (the most common stuck run)

Debounce and batching hold *events* before any run exists: their "debounced until T" and
"in a batch that closes at T" are on the event (`GET /v1/events/<id>`, its `outcomes`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from app.flow.slots import (
    _INVALID,
    constraint_name,
    evaluate_value,
    rules_of,
)
from app.liveness import Liveness
from app.models import JSON, FunctionConfig, RunStatus
from app.state.diagnosis import Diagnosis, QueuedJob
from app.state.records import RunState, RunView

Code = Literal[
    "concurrency",
    "throttled",
    "retrying",
    "sleeping",
    "waiting_for_event",
    "scheduled",
    "queued",
    "no_worker",
]


@dataclass(frozen=True)
class Reason:
    code: Code
    message: str
    until: int | None = None
    """When the run is expected to move on (ms), when that is known."""
    detail: dict[str, JSON] = field(default_factory=dict)

    def to_json(self) -> dict[str, JSON]:
        return {
            "reason": self.code,
            "message": self.message,
            "until": _iso(self.until),
            **self.detail,
        }


def explain(
    view: RunView,
    fn: FunctionConfig | None,
    state: RunState | None,
    diagnosis: Diagnosis,
    live: Liveness,
    now: int,
    *,
    resend_ms: int,
    eta_max_ms: int,
) -> Reason | None:
    """The reason `view` is not executing now, or None (ended, or a worker runs it).
    `resend_ms` and `eta_max_ms` are the queue's (`redeliver_seconds`, `eta_max_seconds`):
    a job due soon is sent at once and its send-by carries `resend_ms` of slack."""
    try:
        if RunStatus(view.status).ended:
            return None
    except ValueError:
        return None
    jobs = diagnosis.run_jobs(view.run_id)
    for queued in jobs:
        if queued.owner == "parked":
            return _concurrency(view, fn, state, queued, diagnosis)
    for queued in jobs:
        if queued.owner == "deferred":
            until = diagnosis.throttled_until(view.run_id) or queued.send_by
            return Reason("throttled", f"throttled until {_clock(until)}", until)
    if any(_running(queued, now) for queued in jobs):
        return None
    reason = _from_steps(view, fn)
    if reason is not None:
        return reason
    waiting = [queued for queued in jobs if queued.send_by is not None]
    if not waiting:
        return None
    first = min(waiting, key=lambda queued: queued.send_by or 0)
    send_by = first.send_by or now
    due = send_by if send_by - now > eta_max_ms + resend_ms else send_by - resend_ms
    if due > now + _SOON_MS and first.owner in ("", "woken"):
        if first.job.attempt > 0 and fn is not None:
            return _retry(first.job.attempt + 1, fn.max_attempts, due, {})
        return Reason("scheduled", f"scheduled for {_clock(due)}", due)
    ahead = diagnosis.jobs_ahead(send_by)
    if live.workers_alive == 0:
        return Reason(
            "no_worker",
            f"queued behind {ahead} jobs with no live worker: start `stepline worker`",
            None,
            {"ahead": ahead, "workers_alive": 0},
        )
    return Reason(
        "queued",
        f"queued behind {ahead} jobs for one of {live.workers_alive} live workers",
        None,
        {"ahead": ahead, "workers_alive": live.workers_alive},
    )


_SOON_MS = 1_000
"""A job sent within this much is as good as sent now (send-by carries the resend slack)."""


def _running(queued: QueuedJob, now: int) -> bool:
    return queued.owner not in ("", "parked", "deferred", "woken") and queued.lease_until > now


def _concurrency(
    view: RunView,
    fn: FunctionConfig | None,
    state: RunState | None,
    queued: QueuedJob,
    diagnosis: Diagnosis,
) -> Reason:
    event = state.events[0] if state is not None and state.events else {}
    rules = rules_of(fn.options) if fn is not None else None
    for rule in rules.concurrency if rules is not None else ():
        name = constraint_name(rule, view.function_id, event)
        where = diagnosis.wait_position(name, queued.job.id)
        if where is None:
            continue
        key: JSON = None
        if rule.key is not None:
            value = evaluate_value(rule.key, event)
            key = "<invalid>" if value is _INVALID else value
        scope = {"fn": "function", "env": "environment", "account": "account"}[rule.scope]
        of = f"key {rule.key} = {_short(key)}" if rule.key is not None else f"this {scope}"
        message = (
            f"waiting for a concurrency slot of {of} (limit {rule.limit}, "
            f"{where.holders} running, {where.ahead} ahead)"
        )
        detail: dict[str, JSON] = {
            "constraint": name,
            "scope": rule.scope,
            "key": rule.key,
            "key_value": key,
            "limit": rule.limit,
            "running": where.holders,
            "ahead": where.ahead,
        }
        return Reason("concurrency", message, None, detail)
    return Reason("concurrency", "waiting for a concurrency slot", None, {"ahead": None})


def _from_steps(view: RunView, fn: FunctionConfig | None) -> Reason | None:
    for step in view.steps:
        status = step.get("status")
        name = step.get("name") or step.get("id")
        if status == "Retrying" or (status == "Errored" and step.get("retry_at") is not None):
            attempts = _int(step.get("attempts")) or 1
            total = fn.max_attempts if fn is not None else None
            until = _int(step.get("retry_at"))
            return _retry(attempts + 1, total, until, {"step": name})
        if status == "Sleeping":
            until = _int(step.get("due_at"))
            return Reason("sleeping", f"sleeping until {_clock(until)}", until, {"step": name})
        if status == "Waiting":
            until = _int(step.get("due_at"))
            event = step.get("waiting_for")
            return Reason(
                "waiting_for_event",
                f"waiting for event {event} until {_clock(until)}",
                until,
                {"step": name, "event": event},
            )
    return None


def _retry(attempt: int, total: int | None, until: int | None, detail: dict[str, JSON]) -> Reason:
    of = f" of {total}" if total is not None else ""
    return Reason(
        "retrying",
        f"retry {attempt}{of} at {_clock(until)}",
        until,
        {**detail, "attempt": attempt, "max_attempts": total},
    )


def _int(value: JSON) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _short(value: JSON) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _clock(ms: int | None) -> str:
    if ms is None:
        return "an unknown time"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S UTC")
