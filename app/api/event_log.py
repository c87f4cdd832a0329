"""The events read API (the write side is `POST /e/<key>` in `events.py`).

GET /v1/events                      events, newest first: `after`/`before` (or `since`/
                                    `until`: received time), `name`, `filter` (CEL over
                                    `event`, app/search.py); cursor paging (`limit` 1..100)
GET /v1/events/<event_id>           an event by internal id
GET /v1/events/<event_id>/runs      the runs it started; `metadata.outcomes` says, per
                                    function, whether it ran or why not (from flow control)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, jsonify, request

from app.api import params
from app.api.auth import Access, requires
from app.api.context import current_engine
from app.api.runs import event_json, iso, list_metadata, run_json, search_metadata
from app.errors import BadRequest, NotFound
from app.models import JSON
from app.state.records import EventCriteria

if TYPE_CHECKING:
    from app.engine import Engine

log = logging.getLogger("stepline.api")

bp = Blueprint("event_log", __name__)


@bp.get("/v1/events")
@requires(Access.OPERATOR)
def list_events() -> Response:
    limit = params.limit()
    after = _either("after", "since")
    before = _either("before", "until")
    cursor = params.cursor()
    where = EventCriteria(params.text("name"), after, before)
    search = params.search_filter("events")
    if search is not None or where.name is not None:
        found = current_engine().reads.search_events(search, limit, where, after=cursor)
        return jsonify(
            {
                "data": [event_json(record) for record in found.items],
                "metadata": search_metadata(found, "events received"),
            }
        )
    page = current_engine().reads.page_events(limit, where, after=cursor)
    return jsonify(
        {
            "data": [event_json(record) for record in page.items],
            "metadata": list_metadata(params.encode_cursor(page.next)),
        }
    )


def _either(name: str, alias: str) -> int | None:
    if request.args.get(name) and request.args.get(alias):
        raise BadRequest(f"give {name} or {alias}, not both", field=alias)
    return params.time_arg(name) if request.args.get(name) else params.time_arg(alias)


@bp.get("/v1/events/<event_id>")
@requires(Access.OPERATOR)
def get_event(event_id: str) -> Response:
    record = current_engine().reads.get_event(event_id)
    if record is None:
        raise NotFound(f"event {event_id} not found", field="event_id")
    return jsonify({"data": event_json(record)})


@bp.get("/v1/events/<event_id>/runs")
@requires(Access.OPERATOR)
def get_event_runs(event_id: str) -> Response:
    engine = current_engine()
    if engine.reads.get_event(event_id) is None:
        raise NotFound(f"event {event_id} not found", field="event_id")
    views = engine.reads.event_runs(event_id)
    return jsonify(
        {
            "data": [run_json(view, steps=False) for view in views],
            "metadata": {"outcomes": event_outcomes(engine, event_id)},
        }
    )


def event_outcomes(engine: Engine, event_id: str) -> list[JSON]:
    """Why functions listening to the event did not run (rate limited, debounced, ...), as
    flow control recorded it."""
    flow = engine.admission.flow
    out = []
    for item in flow.event_outcomes(event_id):
        outcome = _outcome_json(item)
        batch_id, max_size = item.get("batch_id"), item.get("max_size")
        if outcome["outcome"] == "batched" and isinstance(batch_id, str):
            # "closes at T (n of max)": the batch's size now, while it is open
            outcome["batch"] = {
                "id": batch_id,
                "size": flow.batch_size(batch_id),
                "max_size": max_size if isinstance(max_size, int) else None,
            }
        out.append(outcome)
    return out


def _outcome_json(item: Any) -> dict[str, JSON]:
    raw: dict[str, Any] = item if isinstance(item, dict) else dict(getattr(item, "__dict__", {}))
    outcome = raw.get("outcome") or raw.get("status") or raw.get("kind") or "unknown"
    reason = raw.get("reason") or raw.get("message")
    at = raw.get("at")
    # When a held event moves on: a debounce's run start, a batch's close, a rate limit's
    # next admission.
    until = next(
        (raw[k] for k in ("due_at", "closes_at", "retry_at") if isinstance(raw.get(k), int)), None
    )
    return {
        "function_id": str(raw.get("function_id", "")),
        "outcome": str(outcome),
        "reason": None if reason is None else str(reason),
        "run_id": raw.get("run_id") or None,
        "at": iso(at) if isinstance(at, int | float) else None,
        "until": iso(until),
    }
