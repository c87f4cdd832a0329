"""`POST /e/<event_key>`: the event API, as the Inngest SDKs call it.

The body is one event or an array of them. Every event is validated before any is stored, so a
request is accepted whole or refused whole; a refusal names the field (`events[2].name`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from app.api import jsonbody
from app.api.auth import Access, requires
from app.api.context import current_engine, engine_of
from app.api.group_commit import Committed, GroupCommit
from app.errors import BadRequest, NotFound, PayloadTooLarge, Unauthorized
from app.models import JSON
from app.runner import MAX_START_AHEAD_MS
from app.state.store import NewEvent
from app.strictjson import Path

if TYPE_CHECKING:
    from app.engine import Engine

bp = Blueprint("events", __name__)

MAX_EVENT_BYTES = 256 * 1024
MAX_REQUEST_BYTES = 3 * 1024 * 1024
MAX_EVENTS = 5000
TS_MIN_MS = 315_532_800_000  # 1980-01-01
TS_MAX_MS = 4_102_444_800_000  # 2100-01-01
SEED_HEADER = "x-inngest-event-id-seed"
GROUP = "stepline.ingest"
GROUP_MAX_EVENTS = 1000
"""A group commit takes waiting requests up to this many events (a bigger request alone)."""


@bp.post("/e/<event_key>")
@requires(Access.EVENTS)
def send_events(event_key: str) -> tuple[Response, int]:
    """The event key was checked by the policy (`app.api.auth`): in production mode against
    STEPLINE_EVENT_KEYS, in constant time; dev mode takes any key. `app.api.fast_events`
    answers the requests this route would accept ahead of Flask, with `accept` and `commit`."""
    prepared = accept(
        current_engine(), event_key, request.get_data(cache=False), request.headers.get(SEED_HEADER)
    )
    return jsonify({"ids": commit(current_app, prepared), "status": 200}), 200


def accept(engine: Engine, event_key: str, body: bytes, seed: str | None) -> Prepared:
    """A request's events validated, with their ids (no Redis): refused with the route's
    answer (a SteplineError) if the route would refuse it."""
    if not event_key.strip():
        raise Unauthorized("Event key is required")
    events = parse_events(body)
    now = engine.now()
    for index, event in enumerate(events):
        ts = event.get("ts")
        if isinstance(ts, int) and ts > now + MAX_START_AHEAD_MS:
            raise BadRequest(
                f"ts is more than {MAX_START_AHEAD_MS // 86_400_000} days ahead: an event "
                "schedules its runs at its ts, at most that far in the future",
                field=f"events[{index}].ts",
            )
    return Prepared(engine.runner.prepare(events, now, id_seed=seed), now)


def commit(app: Flask, prepared: Prepared) -> list[str]:
    """Store a request's events with those of the requests waiting meanwhile (the group
    commit); their ids, once stored."""
    group: GroupCommit[Prepared, list[str]] = app.extensions[GROUP]
    return group.submit(prepared, weight=len(prepared.events))


@dataclass(frozen=True)
class Prepared:
    """One request's events, ids assigned, waiting for their group's commit."""

    events: list[NewEvent]
    now: int


def install(app: Flask) -> None:
    """Give `app` the group commit of `POST /e` (`app.api.group_commit`): the events of
    requests that arrive while a commit is under way are stored together, in one script call
    with one job, as one batch request's would be."""
    app.extensions[GROUP] = GroupCommit(
        functools.partial(_commit, app), max_weight=GROUP_MAX_EVENTS
    )


def _commit(app: Flask, batch: Sequence[Prepared]) -> Committed[list[str]]:
    """Store the events of several requests in one `Runner.store` (in the leader's thread,
    which may have no request context); each request gets its own ids back. Their one job is
    sent afterwards, by the leader, while the next group commits: it is durable once stored
    (the tick would send it)."""
    engine = engine_of(app)
    now = max(prepared.now for prepared in batch)
    ids, job = engine.runner.store([e for p in batch for e in p.events], now, count=True)
    answers, start = [], 0
    for prepared in batch:
        answers.append(ids[start : start + len(prepared.events)])
        start += len(prepared.events)
    if job is None:
        return Committed(answers)
    return Committed(answers, lambda: engine.queue.dispatch(job))


@bp.post("/invoke/<function_id>")
@requires(Access.OPERATOR)
def invoke_function(function_id: str) -> tuple[Response, int]:
    """Start one run of a function directly (cron-only functions too), as Inngest's dev server
    does: the body `{"data": {...}, "user"?: {...}}` becomes an `inngest/function.invoked`
    event aimed at that function. An operator route, like `/v1` (see app.api.auth)."""
    engine = current_engine()
    if engine.registry.get(function_id) is None:
        raise NotFound(f"function {function_id} not found", field="function_id")
    body = jsonbody.parse(request.get_data(cache=False), blank={})
    if not isinstance(body, dict):
        raise BadRequest('body must be an object such as {"data": {...}}', field="body")
    data, user = body.get("data", {}), body.get("user", {})
    if not isinstance(data, dict) or not isinstance(user, dict):
        field = "data" if not isinstance(data, dict) else "user"
        raise BadRequest(f"{field} must be an object", field=field)
    event: dict[str, JSON] = {
        "name": "inngest/function.invoked",
        "data": {**data, "_inngest": {"fn_id": function_id}},
        "user": user,
    }
    [event_id] = engine.runner.ingest([event], engine.now(), internal=True, count=True)
    return jsonify({"id": event_id, "status": 200}), 200


@bp.post("/e/")
@bp.post("/e")
@requires(Access.EVENTS)
def send_events_without_key() -> Response:
    raise Unauthorized("Event key is required")


def parse_events(body: bytes) -> list[dict[str, JSON]]:
    """Validate a request body into events (only the known fields, nulls dropped).

    The body is strict JSON (`app.api.jsonbody`): a refusal names the event and its field,
    `events[2].data.total` in a batch, `events[0].data.total` for a single event.
    """
    parsed = jsonbody.parse(body, prefix=_event_prefix)
    if isinstance(parsed, dict):
        items: list[Any] = [parsed]
    elif isinstance(parsed, list):
        items = parsed
    else:
        raise BadRequest("body must be an event object or an array of events", field="body")
    if len(items) > MAX_EVENTS:
        raise BadRequest(f"at most {MAX_EVENTS} events per request", field="events")
    measure = len(body) * MAX_GROWTH > MAX_EVENT_BYTES
    return [validate_event(item, f"events[{i}]", measure=measure) for i, item in enumerate(items)]


MAX_GROWTH = 5
"""How many times longer than its text a JSON value can get when written back compactly: only
numbers grow (`9e15` is `9000000000000000.0`, 4.5 times); whitespace, escapes and strings do
not. A body shorter than MAX_EVENT_BYTES / MAX_GROWTH holds no event over the limit, so its
events need not be measured one by one."""


def validate_event(item: Any, where: str, *, measure: bool = True) -> dict[str, JSON]:
    if not isinstance(item, dict):
        raise BadRequest("an event must be a JSON object", field=where)
    if measure:
        size = len(json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        if size > MAX_EVENT_BYTES:
            raise PayloadTooLarge(
                f"event is {size} bytes; the limit is {MAX_EVENT_BYTES} bytes", field=where
            )
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise BadRequest("event name is required (a non-empty string)", field=f"{where}.name")
    if name.lower().startswith("inngest/"):
        raise BadRequest(f"event name {name!r} is reserved for internal use", field=f"{where}.name")
    event: dict[str, JSON] = {"name": name}
    for key in ("data", "user"):
        value = item.get(key)
        if value is not None and not isinstance(value, dict):
            raise BadRequest(f"{key} must be an object", field=f"{where}.{key}")
        event[key] = value or {}
    event_id = item.get("id")
    if event_id is not None and not isinstance(event_id, str):
        raise BadRequest("id must be a string", field=f"{where}.id")
    event["id"] = event_id or ""
    ts = item.get("ts")
    if ts is not None:
        event["ts"] = _timestamp(ts, f"{where}.ts")
    v = item.get("v")
    if v is not None:
        if not isinstance(v, str):
            raise BadRequest("v must be a string", field=f"{where}.v")
        event["v"] = v
    return event


def _timestamp(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest("ts must be an integer (milliseconds since the epoch)", field=field)
    if isinstance(value, float) and not value.is_integer():
        raise BadRequest("ts must be an integer (milliseconds since the epoch)", field=field)
    ts = int(value)
    if ts != 0 and not TS_MIN_MS <= ts < TS_MAX_MS:
        raise BadRequest("ts must be in milliseconds between 1980 and 2100", field=field)
    return ts


def _event_prefix(path: Path) -> str:
    """A batch's paths start with the event's index; a single event's with its field."""
    return "events" if path and isinstance(path[0], int) else "events[0]"
