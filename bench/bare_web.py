"""The ceiling of the web benchmarks: a bare Flask app under the same gunicorn as `web`.

    gunicorn -c python:app.gunicorn_conf "bench.bare_web:create_app()"

`POST /e/<key>` reads the body and answers a constant 200, touching neither JSON parsing
nor Redis: what the server, Flask and the client cost per request on this machine, which
no work in Stepline's view can beat.
"""

from __future__ import annotations

from flask import Flask, Response, request

_ANSWER = b'{"ids":[],"status":200}'


def create_app() -> Flask:
    app = Flask("bare-web")

    @app.post("/e/<event_key>")
    def send_events(event_key: str) -> Response:
        request.get_data(cache=False)
        return Response(_ANSWER, status=200, mimetype="application/json")

    @app.get("/health")
    def health() -> Response:
        return Response(b"{}", mimetype="application/json")

    return app
