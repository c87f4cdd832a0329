"""`POST /e/<key>` ahead of Flask: a WSGI middleware that answers the event requests the Flask
route would accept, and hands every other request to Flask.

    create_app(): app.wsgi_app = FastEvents(app, app.wsgi_app)   (Flask's middleware slot)

Why: a one-event request spent about as much CPU in Flask's machinery (request and app
contexts, routing, the before/after hooks, the response object) as in Stepline's own work
(bench.events, README). This path does what the route does, with the route's own code:

    route         POST /e/<key>, `key` one path segment (the rule `/e/<event_key>`)
    access        app.api.auth.admit with the rule the route declares (Access.EVENTS): the
                  event key against STEPLINE_EVENT_KEYS in constant time in production mode,
                  loopback peer and local Host in dev mode; the cross-origin and body-type
                  checks (app.api.browser) in both
    size          a Content-Length of at most the app's MAX_CONTENT_LENGTH (MAX_REQUEST_BYTES)
    body          app.api.events.accept: the same parsing, validation and ids (seed header)
    store         app.api.events.commit: the same group commit
    answer        `{"ids": [...], "status": 200}` written by the app's JSON provider, as
                  `jsonify` writes it (same bytes, same headers)

Every refusal is Flask's own: a request this path would not answer 200 (another method or
path, a key or origin the policy refuses, a chunked or oversized body, a body `accept`
refuses, an app whose engine is not built yet or that routes by host) is handed to Flask with
its body put back, and the route answers it as it always has (a refused body is parsed twice:
refusals are rare and small). A failure once the events went to the group commit (Redis
unavailable: 503 with Retry-After) cannot be handed over, as the store may have happened: the
app's error handlers answer it, in a request context made for it. gunicorn writes the access
log line from the answer either way; the route has no metrics or tracing hooks of its own
(events are counted by the ingest script).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from flask import Flask, Response
from flask.json.provider import DefaultJSONProvider

from app.api import auth, events
from app.api.context import EXTENSION

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from app.engine import Engine

_PATH = re.compile(r"/e/([^/]+)")
_METHOD, _PATH_INFO = "REQUEST_METHOD", "PATH_INFO"
"""Keys of the WSGI environ (not settings: those are read in app/config.py only)."""
ENDPOINT = "events.send_events"


class FastEvents:
    def __init__(self, app: Flask, flask: WSGIApplication) -> None:
        rule = auth.rule_of(app.view_functions.get(ENDPOINT))
        if rule is None or rule.access is not auth.Access.EVENTS:
            raise RuntimeError(f"{ENDPOINT} must be a route declared Access.EVENTS")
        self.app = app
        self.flask = flask
        """Flask's own `wsgi_app`: every request this path does not answer."""
        self._rule = rule
        self.answered = 0
        """Requests answered here, not by Flask (tests and benchmarks read it)."""

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get(_METHOD) != "POST":
            return self.flask(environ, start_response)
        # WSGI hands the path over as latin-1; werkzeug routes on its UTF-8 reading.
        path = environ.get(_PATH_INFO, "").encode("latin-1").decode("utf-8", "replace")
        match = _PATH.fullmatch(path)
        engine: Engine | None = self.app.extensions.get(EXTENSION)
        config = self.app.config
        if (
            match is None
            or engine is None
            or config["SERVER_NAME"] is not None
            or config["TRUSTED_HOSTS"] is not None
        ):
            return self.flask(environ, start_response)
        return self._ingest(environ, start_response, engine, match.group(1))

    def _ingest(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        engine: Engine,
        event_key: str,
    ) -> Iterable[bytes]:
        request = self.app.request_class(environ, populate_request=False)
        length = request.content_length
        limit = self.app.config["MAX_CONTENT_LENGTH"]
        if length is None or (limit is not None and length > limit):
            return self.flask(environ, start_response)  # chunked, absent or too large
        try:
            auth.admit(request, self._rule, engine.settings, {"event_key": event_key})
        except Exception:
            return self.flask(environ, start_response)
        body = environ["wsgi.input"].read(length) if length else b""
        try:
            if len(body) != length:
                raise ConnectionError("the client sent less than its Content-Length")
            prepared = events.accept(
                engine, event_key, body, request.headers.get(events.SEED_HEADER)
            )
        except Exception:
            environ["wsgi.input"] = io.BytesIO(body)
            return self.flask(environ, start_response)
        try:
            ids = events.commit(self.app, prepared)
        except Exception as exc:
            return self._failed(environ, start_response, exc)
        self.answered += 1
        return self._accepted(environ, start_response, ids)

    def _accepted(
        self, environ: WSGIEnvironment, start_response: StartResponse, ids: list[str]
    ) -> Iterable[bytes]:
        """`jsonify({"ids": ids, "status": 200})`'s answer, without a response object: the
        app's JSON provider writes the body as `jsonify` does when compact (not debugging)."""
        provider = self.app.json
        answer = {"ids": ids, "status": 200}
        if not isinstance(provider, DefaultJSONProvider) or not (
            provider.compact or (provider.compact is None and not self.app.debug)
        ):
            response = cast(Response, provider.response(answer))
            return response(environ, start_response)
        body = f"{provider.dumps(answer, separators=(',', ':'))}\n".encode()
        headers = [("Content-Type", provider.mimetype), ("Content-Length", str(len(body)))]
        start_response("200 OK", headers)
        return [body]

    def _failed(
        self, environ: WSGIEnvironment, start_response: StartResponse, exc: Exception
    ) -> Iterable[bytes]:
        """The answer of the app's error handlers to `exc`, as Flask's route would give it."""
        with self.app.request_context(environ):
            answer: Any = self.app.handle_user_exception(exc)
            response = self.app.finalize_request(answer, from_error_handler=True)
        return response(environ, start_response)
