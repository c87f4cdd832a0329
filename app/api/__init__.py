"""The HTTP API, one Flask app.

    create_app(engine) ─► events    POST /e/<key>
                      ─► runs      /v1/runs/<id>, /v1/events/<id>[/runs]
                      ─► health    GET /health
                      ─► register  POST /fn/register, /v0/runs/<id>/{batch,actions}
                      ─► errors    every failure answers JSON with a stable `code`

Nothing is built at import time. The engine lives in `app.extensions["stepline"]`; without an
`engine` argument the first request builds one from the environment (`Settings.from_env()`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask

from app.api import errors, events, health, register, runs
from app.api.context import EXTENSION, current_engine, ensure_engine

if TYPE_CHECKING:
    from app.engine import Engine

__all__ = ["create_app", "current_engine"]


def create_app(engine: Engine | None = None) -> Flask:
    app = Flask("stepline")
    app.config["MAX_CONTENT_LENGTH"] = events.MAX_REQUEST_BYTES
    if engine is not None:
        app.extensions[EXTENSION] = engine
    app.before_request(ensure_engine)
    errors.register(app)
    app.register_blueprint(events.bp)
    app.register_blueprint(runs.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(register.blueprint)
    return app
