"""`GET /health`: Redis, the workers' heartbeats and beat's last tick (app/liveness.py).

200  Redis answers; `ok` false and `problems` set when beat or every worker is gone (the
     API itself still works: a load balancer must keep sending events)
503  Redis does not answer; `message` says why (refused, not answering in time, loading its
     data after a restart). The same process answers 200 again once Redis is back.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify

from app.api.auth import Access, requires
from app.api.context import current_engine
from app.api.errors import RETRY_AFTER_SECONDS, why
from app.liveness import liveness

log = logging.getLogger("stepline.api")

bp = Blueprint("health", __name__)


@bp.get("/health")
@requires(Access.PUBLIC)
def health() -> tuple[Response, int]:
    reason = "it does not answer PING"
    try:
        engine = current_engine()
        live = liveness(engine.store, engine.now())
    except Exception as exc:  # refused, timed out, loading: why it is unavailable
        log.warning("health check: redis unavailable: %s", exc)
        reason, live = why(exc), None
    if live is None:
        message = f"Redis unavailable: {reason}"
        body = {"status": 503, "message": message, "redis": False, "ok": False}
        response = jsonify(body)
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response, 503
    problems = live.problems()
    message = "; ".join(problems) if problems else "OK"
    body = {"status": 200, "message": message, "redis": True, "ok": not problems}
    return jsonify({**body, **live.to_json()}), 200
