"""The HTTP API, one Flask app.

    create_app(engine) ─► auth      who may call what: every route declares its class
                      ─► events    POST /e/<key>, POST /invoke/<function id>
                      ─► fast_events  POST /e/<key> answered ahead of Flask (same checks)
                      ─► runs      /v1/runs[/<id>[/cancel|/rerun|/replay]]
                      ─► event_log /v1/events[/<id>[/runs]]
                      ─► functions /v1/functions[/<id>], /v1/apps[/sync|/<id>/sync]
                      ─► cancellations  POST /v1/cancellations
                      ─► bulk           /v1/bulk (background cancel/replay by filter)
                      ─► metrics   GET /metrics (Prometheus, counters kept in Redis)
                      ─► health    GET /health
                      ─► workers   GET /v1/workers (heartbeats, queue depth, warnings)
                      ─► register  POST /fn/register, /v0/runs/<id>/{batch,actions}
                      ─► connect   POST /v0/connect/{start,flush} (Connect workers)
                      ─► sdk_calls POST /v1/signals, /v1/checkpoint/<run>/async
                      ─► errors    every failure answers JSON with a stable `code`
                      ─► ui        GET /: the dev UI (static HTML + JS modules, /ui/...)

Nothing is built at import time. The engine lives in `app.extensions["stepline"]`; without an
`engine` argument the first request builds one from the environment (`Settings.from_env()`).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from flask import Flask, Response, request

from app.api import (
    auth,
    bulk,
    cancellations,
    connect,
    errors,
    event_log,
    events,
    fast_events,
    functions,
    health,
    jsonbody,
    metrics,
    register,
    runs,
    sdk_calls,
    ui,
    workers,
)
from app.api.context import EXTENSION, current_engine, ensure_engine

if TYPE_CHECKING:
    from app.engine import Engine

__all__ = ["create_app", "current_engine"]


def create_app(engine: Engine | None = None) -> Flask:
    app = Flask("stepline", static_folder=None)  # the UI serves its own files (ui.py)
    app.json = jsonbody.StrictJSONProvider(app)
    # `/v1/apps//sync` is not `/v1/apps/sync`: a 404, not an HTML redirect to another route.
    app.url_map.merge_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = events.MAX_REQUEST_BYTES
    if engine is not None:
        app.extensions[EXTENSION] = engine
    app.before_request(ensure_engine)
    app.before_request(auth.check)
    errors.register(app)
    app.register_blueprint(events.bp)
    events.install(app)
    app.register_blueprint(runs.bp)
    app.register_blueprint(event_log.bp)
    app.register_blueprint(functions.bp)
    app.register_blueprint(cancellations.bp)
    app.register_blueprint(bulk.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(workers.bp)
    app.register_blueprint(register.blueprint)
    app.register_blueprint(connect.bp)
    app.register_blueprint(sdk_calls.bp)
    app.register_blueprint(ui.bp)
    app.after_request(_conditional)
    # `POST /e/<key>` answered ahead of Flask's request machinery, everything else by Flask.
    app.wsgi_app = fast_events.FastEvents(app, app.wsgi_app)  # type: ignore[method-assign]
    return app


def _conditional(response: Response) -> Response:
    """ETags on the /v1 reads, so the UI's polling gets a 304 when nothing changed."""
    if (
        request.method == "GET"
        and request.path.startswith("/v1/")
        and response.status_code == 200
        and not response.direct_passthrough
    ):
        body = response.get_json(silent=True)
        if isinstance(body, dict) and isinstance(body.get("metadata"), dict):
            # `fetched_at` changes on every read; it must not change the tag.
            body["metadata"].pop("fetched_at", None)
            tag = hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()
            response.set_etag(tag)
        else:
            response.add_etag()
        response.make_conditional(request)
    return response
