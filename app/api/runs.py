"""The runs API, shaped like Inngest's REST API v1: every answer is `{"data": ...}`.

GET    /v1/runs/<run_id>             a run with its step history
DELETE /v1/runs/<run_id>             cancel it (also POST /v1/runs/<run_id>/cancel)
GET    /v1/events/<event_id>         an event by internal id
GET    /v1/events/<event_id>/runs    the runs it started
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, jsonify

from app.api.context import current_engine
from app.errors import Conflict, NotFound
from app.models import JSON, RunStatus
from app.state.store import EventRecord, RunView

bp = Blueprint("runs", __name__)


@bp.get("/v1/runs/<run_id>")
def get_run(run_id: str) -> Response:
    view = current_engine().store.get_run(run_id)
    if view is None:
        raise NotFound(f"run {run_id} not found", field="run_id")
    return jsonify({"data": run_json(view)})


@bp.delete("/v1/runs/<run_id>")
@bp.post("/v1/runs/<run_id>/cancel")
def cancel_run(run_id: str) -> Response:
    engine = current_engine()
    view = engine.store.get_run(run_id)
    if view is None:
        raise NotFound(f"run {run_id} not found", field="run_id")
    if _ended(view.status):
        raise Conflict(f"run {run_id} has already ended ({view.status})")
    if not engine.executor.cancel(run_id, engine.now()):
        # Lost a race: another canceller is fine, any other ending is a conflict.
        view = engine.store.get_run(run_id)
        if view is None:
            raise NotFound(f"run {run_id} not found", field="run_id")
        if view.status != RunStatus.CANCELLED.value:
            raise Conflict(f"run {run_id} has already ended ({view.status})")
    return jsonify({"data": {"run_id": run_id, "status": RunStatus.CANCELLED.value}})


@bp.get("/v1/events/<event_id>")
def get_event(event_id: str) -> Response:
    record = current_engine().store.get_event(event_id)
    if record is None:
        raise NotFound(f"event {event_id} not found", field="event_id")
    return jsonify({"data": event_json(record)})


@bp.get("/v1/events/<event_id>/runs")
def get_event_runs(event_id: str) -> Response:
    store = current_engine().store
    if store.get_event(event_id) is None:
        raise NotFound(f"event {event_id} not found", field="event_id")
    views = [store.get_run(run_id) for run_id in store.event_run_ids(event_id)]
    return jsonify({"data": [run_json(view) for view in views if view is not None]})


def run_json(view: RunView) -> dict[str, JSON]:
    out: dict[str, JSON] = {
        "run_id": view.run_id,
        "function_id": view.function_id,
        "status": view.status,
        "event_id": view.event_ids[0] if view.event_ids else None,
        "event_ids": view.event_ids,
        "created_at": iso(view.created_at),
        "run_started_at": iso(view.started_at),
        "ended_at": iso(view.ended_at),
    }
    if view.error is not None:
        out["error"] = view.error
    else:
        out["output"] = view.output
    out["steps"] = [step_json(record) for record in view.steps]
    return out


def step_json(record: dict[str, JSON]) -> dict[str, JSON]:
    """A step history record as the API shows it (times as ISO-8601)."""
    out: dict[str, JSON] = {
        "id": record.get("id", record.get("step")),
        "name": record.get("name"),
        "kind": record.get("kind"),
        "status": record.get("status"),
        "attempts": record.get("attempts", 0),
        "started_at": iso(record.get("started_at")),
        "ended_at": iso(record.get("ended_at")),
    }
    if record.get("error") is not None:
        out["error"] = record["error"]
    elif "output" in record:
        out["output"] = record["output"]
    return out


def event_json(record: EventRecord) -> dict[str, JSON]:
    event = record.event
    return {
        "internal_id": record.internal_id,
        "id": event.get("id"),
        "name": event.get("name"),
        "data": event.get("data"),
        "user": event.get("user"),
        "ts": event.get("ts"),
        "v": event.get("v"),
        "received_at": iso(record.received_at),
    }


def iso(ms: JSON) -> str | None:
    """Milliseconds since the epoch as ISO-8601 UTC (`2024-01-01T12:00:00.000Z`)."""
    if isinstance(ms, bool) or not isinstance(ms, int | float):
        return ms if isinstance(ms, str) else None
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ms) % 1000:03d}Z"


def _ended(status: str) -> bool:
    try:
        return RunStatus(status).ended
    except ValueError:
        return False
