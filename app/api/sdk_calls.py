"""Calls SDK apps make while their functions run: signals and checkpoints.

    POST /v1/signals                    {"signal", "data"}: resume the run waiting for it
                                        (`app.signals`); 200 {"data": {"run_id"}}, 404 none
    POST /v1/checkpoint/<run>/async     steps a checkpointing SDK finished (`app.checkpoint`);
                                        200, 409 the run is ended (stale dispatch)

Both are `sdk` routes (`app.api.auth`): in production mode they need the signing key,
`Authorization: Bearer <hashed key>`, as the SDKs send it.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from app import checkpoint, signals
from app.api import jsonbody
from app.api.auth import Access, requires
from app.api.context import current_engine
from app.api.errors import error_response
from app.errors import BadRequest

bp = Blueprint("sdk_calls", __name__)


@bp.post("/v1/signals")
@requires(Access.SDK)
def send_signal() -> tuple[Response, int]:
    engine = current_engine()
    try:
        body = jsonbody.parse(request.get_data(cache=True))
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object {signal, data}")
        name = body.get("signal")
        if not isinstance(name, str) or not name.strip():
            raise BadRequest("signal must be a non-empty string", field="signal")
    except BadRequest as exc:
        return error_response(exc)
    run_id = signals.send(engine.store, engine.runner, name, body.get("data"), engine.now())
    if run_id is None:
        message = f"no run is waiting for signal {name!r}"
        return jsonify({"error": message, "code": "signal_not_found", "status": 404}), 404
    return jsonify({"data": {"run_id": run_id}}), 200


@bp.post("/v1/checkpoint/<run_id>/async")
@requires(Access.SDK)
def checkpoint_async(run_id: str) -> tuple[Response, int]:
    engine = current_engine()
    try:
        body = jsonbody.parse(request.get_data(cache=True))
        applied = checkpoint.apply(
            engine.store,
            engine.executor,
            run_id,
            body,
            engine.now(),
            request.headers.get("X-Inngest-SDK"),
        )
    except BadRequest as exc:
        return error_response(exc)
    if applied.outcome == "ended":
        message = f"run {run_id} is not running: stop executing it"
        return jsonify({"error": message, "code": "stale_dispatch", "status": 409}), 409
    return jsonify({"data": {"saved": applied.saved}}), 200
