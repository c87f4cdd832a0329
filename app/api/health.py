"""`GET /health`: 200 while Redis answers, 503 when it does not."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify

from app.api.auth import Access, requires
from app.api.context import current_engine

log = logging.getLogger("stepline.api")

bp = Blueprint("health", __name__)


@bp.get("/health")
@requires(Access.PUBLIC)
def health() -> tuple[Response, int]:
    try:
        redis_ok = current_engine().store.ping()
    except Exception as exc:  # a down Redis may raise rather than answer False
        log.warning("health check: redis unavailable: %s", exc)
        redis_ok = False
    if not redis_ok:
        return jsonify({"status": 503, "message": "Redis unavailable", "redis": False}), 503
    return jsonify({"status": 200, "message": "OK", "redis": True}), 200
