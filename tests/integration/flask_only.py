"""The API without its fast path (app.api.fast_events): every request answered by Flask, as
before it. A gunicorn app for tests that compare the two (`tests.integration.flask_only:
create_app()`)."""

from __future__ import annotations

from flask import Flask

from app.api import create_app as create_api
from app.api.fast_events import FastEvents


def create_app() -> Flask:
    app = create_api()
    assert isinstance(app.wsgi_app, FastEvents)
    app.wsgi_app = app.wsgi_app.flask  # type: ignore[method-assign]
    return app
