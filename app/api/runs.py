"""The runs API, shaped like Inngest's REST API v1: every answer is `{"data": ...}`.

GET    /v1/runs                      runs, newest first: filters function_id, status, after,
                                     before (created time), `filter` (CEL, app/search.py);
                                     cursor paging (`limit` 1..100). A filtered page looks
                                     at a bounded number of runs: `metadata.partial` says it
                                     stopped short, `next_cursor` goes on from there
GET    /v1/runs/<run_id>             a run with its step history and `ctx.logger` lines
                                     (`logs`, each naming its step); a queued or waiting run
                                     also says why it is not running (`waiting`, app/why.py)
DELETE /v1/runs/<run_id>             cancel it (also POST /v1/runs/<run_id>/cancel)
POST   /v1/runs/<run_id>/rerun       a new run from the start with the same events
POST   /v1/runs/<run_id>/replay      a new run from the failed step (or `from_step`)

The contract is `docs/openapi.yaml`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, jsonify

from app.api import params
from app.api.auth import Access, requires
from app.api.context import current_engine
from app.errors import BadRequest, Conflict, NotFound
from app.liveness import liveness
from app.models import JSON, RunStatus
from app.replay import NewRunInfo, replay, rerun
from app.state.diagnosis import Diagnosis
from app.state.records import RunCriteria, SearchPage
from app.state.store import EventRecord, RunView
from app.why import explain

bp = Blueprint("runs", __name__)


@bp.get("/v1/runs")
@requires(Access.OPERATOR)
def list_runs() -> Response:
    limit = params.limit()
    where = RunCriteria(
        function_id=params.text("function_id"),
        status=params.status(),
        created_after=params.time_arg("after"),
        created_before=params.time_arg("before"),
    )
    cursor = params.cursor()
    search = params.search_filter("runs")
    if search is not None:
        found = current_engine().reads.search_runs(search, limit, where, after=cursor)
        return jsonify(
            {
                "data": [run_json(view, steps=False) for view in found.items],
                "metadata": search_metadata(found, "runs created"),
            }
        )
    page = current_engine().reads.page_runs(limit, where, after=cursor)
    return jsonify(
        {
            "data": [run_json(view, steps=False) for view in page.items],
            "metadata": list_metadata(params.encode_cursor(page.next)),
        }
    )


@bp.get("/v1/runs/<run_id>")
@requires(Access.OPERATOR)
def get_run(run_id: str) -> Response:
    engine = current_engine()
    view = engine.reads.get_run(run_id)
    if view is None:
        raise NotFound(f"run {run_id} not found", field="run_id")
    out = run_json(view)
    if not _ended(view.status):
        now = engine.now()
        reason = explain(
            view,
            engine.registry.get(view.function_id),
            engine.store.load_run(run_id),
            Diagnosis(engine.store),
            liveness(engine.store, now),
            now,
            resend_ms=int(engine.settings.redeliver_seconds * 1000),
            eta_max_ms=int(engine.settings.eta_max_seconds * 1000),
        )
        out["waiting"] = None if reason is None else reason.to_json()
    return jsonify({"data": out})


@bp.delete("/v1/runs/<run_id>")
@bp.post("/v1/runs/<run_id>/cancel")
@requires(Access.OPERATOR)
def cancel_run(run_id: str) -> Response:
    engine = current_engine()
    view = engine.reads.get_run(run_id)
    if view is None:
        raise NotFound(f"run {run_id} not found", field="run_id")
    if _ended(view.status):
        raise Conflict(f"run {run_id} has already ended ({view.status})")
    if not engine.executor.cancel(run_id, engine.now()):
        # Lost a race: another canceller is fine, any other ending is a conflict.
        view = engine.reads.get_run(run_id)
        if view is None:
            raise NotFound(f"run {run_id} not found", field="run_id")
        if view.status != RunStatus.CANCELLED.value:
            raise Conflict(f"run {run_id} has already ended ({view.status})")
    return jsonify({"data": {"run_id": run_id, "status": RunStatus.CANCELLED.value}})


@bp.post("/v1/runs/<run_id>/rerun")
@requires(Access.OPERATOR)
def rerun_run(run_id: str) -> tuple[Response, int]:
    engine = current_engine()
    made = rerun(engine.reads, engine.runner, run_id, engine.now())
    return jsonify({"data": _new_run_json(made, replayed=False)}), 201


@bp.post("/v1/runs/<run_id>/replay")
@requires(Access.OPERATOR)
def replay_run(run_id: str) -> tuple[Response, int]:
    body = params.body()
    from_step = body.get("from_step")
    if from_step is not None and (not isinstance(from_step, str) or not from_step):
        raise BadRequest("from_step must be a step id (string)", field="from_step")
    engine = current_engine()
    made = replay(engine.reads, engine.runner, run_id, engine.now(), from_step)
    return jsonify({"data": _new_run_json(made, replayed=True)}), 201


def _new_run_json(made: NewRunInfo, *, replayed: bool) -> dict[str, JSON]:
    out: dict[str, JSON] = {
        "run_id": made.run_id,
        "original_run_id": made.original_run_id,
        "function_id": made.function_id,
        "status": RunStatus.QUEUED.value,
    }
    if replayed:
        out["from_step"] = made.from_step
        out["copied_steps"] = made.copied_steps
    return out


def list_metadata(next_cursor: str | None) -> dict[str, JSON]:
    return {"next_cursor": next_cursor, "fetched_at": iso(current_engine().now())}


def search_metadata(found: SearchPage[Any], what: str) -> dict[str, JSON]:
    """Paging of a filtered search, saying when the page was cut short by the search's
    bounds (`partial`) and how far it looked."""
    out = list_metadata(params.encode_cursor(found.next))
    out["partial"] = found.partial
    out["searched_to"] = iso(found.reached[0]) if found.reached else None
    if found.partial and found.reached:
        out["message"] = (
            f"partial: searched {what} down to {iso(found.reached[0])}; "
            "continue with next_cursor to search older ones"
        )
    return out


def run_json(view: RunView, *, steps: bool = True) -> dict[str, JSON]:
    out: dict[str, JSON] = {
        "run_id": view.run_id,
        "function_id": view.function_id,
        "status": view.status,
        "event_id": view.event_ids[0] if view.event_ids else None,
        "event_ids": view.event_ids,
        "created_at": iso(view.created_at),
        "run_started_at": iso(view.started_at),
        "ended_at": iso(view.ended_at),
        "original_run_id": view.original_run_id,
    }
    if view.error is not None:
        out["error"] = view.error
    else:
        out["output"] = view.output
    if steps:
        out["steps"] = [step_json(record) for record in view.steps]
        out["logs"] = list(view.logs)
        out["logs_dropped"] = view.logs_dropped
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
    for when in ("due_at", "retry_at"):
        if record.get(when) is not None:
            out[when] = iso(record[when])
    if record.get("waiting_for"):
        out["waiting_for"] = record["waiting_for"]
    memo = record.get("memo")
    if record.get("error") is not None:
        out["error"] = record["error"]
    elif "output" in record:
        out["output"] = record["output"]
    elif isinstance(memo, dict) and "data" in memo:
        out["output"] = memo["data"]  # a step.run's value, memoized as {"data": ...}
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
