"""`GET /metrics`: Prometheus text format, read from Redis (see `app/metrics.py`)."""

from __future__ import annotations

from flask import Blueprint, Response
from prometheus_client import CONTENT_TYPE_LATEST

from app import metrics
from app.api.auth import Access, requires
from app.api.context import current_engine

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
@requires(Access.OPERATOR)
def scrape() -> Response:
    engine = current_engine()
    return Response(metrics.render(engine.store, engine.now()), content_type=CONTENT_TYPE_LATEST)
