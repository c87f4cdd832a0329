"""`GET /health`: Redis, the workers' heartbeats and beat's last tick (app/liveness.py).

200  Redis answers; `ok` false and `problems` set when beat or every worker is gone (the
     API itself still works: a load balancer must keep sending events)
503  Redis does not answer
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify

from app.api.auth import Access, requires
from app.api.context import current_engine
from app.liveness import liveness

log = logging.getLogger("stepline.api")

bp = Blueprint("health", __name__)


@bp.get("/health")
@requires(Access.PUBLIC)
def health() -> tuple[Response, int]:
    try:
        engine = current_engine()
        redis_ok = engine.store.ping()
        live = liveness(engine.store, engine.now()) if redis_ok else None
    except Exception as exc:  # a down Redis may raise rather than answer False
        log.warning("health check: redis unavailable: %s", exc)
        live = None
    if live is None:
        body = {"status": 503, "message": "Redis unavailable", "redis": False, "ok": False}
        return jsonify(body), 503
    problems = live.problems()
    message = "; ".join(problems) if problems else "OK"
    body = {"status": 200, "message": message, "redis": True, "ok": not problems}
    return jsonify({**body, **live.to_json()}), 200
