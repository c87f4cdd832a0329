"""Bulk operations by filter, in the background (app/bulk.py does the work).

POST /v1/bulk                 `{action: cancel|replay, function_id?, status?, after?, before?,
                              filter?, dry_run?}`: with dry_run, how many runs it would act
                              on (`matched`, `exact`); else start it (201) as a durable job
GET  /v1/bulk                 the latest operations, newest first
GET  /v1/bulk/<bulk_id>       one operation: state, estimate, matched, done, failed, skipped
POST /v1/bulk/<bulk_id>/stop  stop it before its next run (a stopped or finished one: 409)

`filter` is the search language of `GET /v1/runs?filter=` (app/search.py).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from app.api import params
from app.api.auth import Access, requires
from app.api.context import current_engine
from app.api.runs import iso
from app.bulk import ACTIONS, Spec, validate
from app.errors import BadRequest, Conflict, NotFound
from app.models import JSON, RunStatus
from app.state.bulk import BulkRecord

bp = Blueprint("bulk", __name__)

FIELDS = {"action", "function_id", "status", "after", "before", "filter", "dry_run"}


@bp.post("/v1/bulk")
@requires(Access.OPERATOR)
def create_bulk() -> tuple[Response, int]:
    body = params.body()
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise BadRequest(
            f"unknown field {unknown[0]!r} (known: {', '.join(sorted(FIELDS))})", field=unknown[0]
        )
    spec = _spec(body)
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise BadRequest("dry_run must be true or false", field="dry_run")
    engine = current_engine()
    if spec.function_id is not None and engine.store.get_function(spec.function_id) is None:
        raise NotFound(f"function {spec.function_id} not found", field="function_id")
    validate(spec)
    if dry_run:
        matched, exact = engine.bulks.count(spec)
        return jsonify(
            {"data": {"dry_run": True, "action": spec.action, "matched": matched, "exact": exact}}
        ), 200
    now = engine.now()
    record, job = engine.bulks.start(spec, now)
    engine.queue.enqueue(job, now, now)
    return jsonify({"data": bulk_json(record)}), 201


@bp.get("/v1/bulk")
@requires(Access.OPERATOR)
def list_bulk() -> Response:
    records = current_engine().bulks.store.recent(params.limit())
    return jsonify({"data": [bulk_json(record) for record in records]})


@bp.get("/v1/bulk/<bulk_id>")
@requires(Access.OPERATOR)
def get_bulk(bulk_id: str) -> Response:
    return jsonify({"data": bulk_json(_found(bulk_id))})


@bp.post("/v1/bulk/<bulk_id>/stop")
@requires(Access.OPERATOR)
def stop_bulk(bulk_id: str) -> Response:
    engine = current_engine()
    before = engine.bulks.store.stop(bulk_id, engine.now())
    if before == "missing":
        raise NotFound(f"bulk operation {bulk_id} not found", field="bulk_id")
    if before != "running":
        raise Conflict(f"bulk operation {bulk_id} is not running ({before})")
    return jsonify({"data": bulk_json(_found(bulk_id))})


def _found(bulk_id: str) -> BulkRecord:
    record = current_engine().bulks.store.get(bulk_id)
    if record is None:
        raise NotFound(f"bulk operation {bulk_id} not found", field="bulk_id")
    return record


def _spec(body: dict[str, Any]) -> Spec:
    action = body.get("action")
    if action not in ACTIONS:
        raise BadRequest("action must be cancel or replay", field="action")
    function_id = _text(body, "function_id")
    status = _text(body, "status")
    if status is not None and status not in {item.value for item in RunStatus}:
        names = ", ".join(item.value for item in RunStatus)
        raise BadRequest(f"status must be one of {names}, not {status!r}", field="status")
    after = _time(body, "after")
    before = _time(body, "before")
    return Spec(action, function_id, status, after, before, _text(body, "filter"))


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string", field=name)
    return value


def _time(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    return None if value is None or value == "" else params.parse_time(value, name)


def bulk_json(record: BulkRecord) -> dict[str, JSON]:
    spec = record.spec
    return {
        "id": record.id,
        "state": record.state,
        "action": spec.get("action"),
        "function_id": spec.get("function_id"),
        "status": spec.get("status"),
        "after": iso(spec.get("created_after")),
        "before": iso(spec.get("created_before")),
        "filter": spec.get("filter"),
        "estimate": record.estimate,
        "matched": record.matched,
        "done": record.done,
        "failed": record.failed,
        "skipped": record.skipped,
        "created_at": iso(record.created_at),
        "updated_at": iso(record.updated_at),
        "finished_at": iso(record.finished_at),
    }
