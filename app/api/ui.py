"""The dev UI: a single page served at `/`, plain HTML + JS modules + CSS from `static/`.

    GET /                    index.html (the app routes itself with `#/runs`, `#/events`, ...)
    GET /ui/<path>           the assets (revalidated with ETags, so an upgrade shows at once)

The page only talks to the public API (`/v1/...`, `POST /e/<key>`), the same one scripts use;
it holds no state of its own and needs no build step.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

from app.api.auth import Access, requires

STATIC = Path(__file__).resolve().parent / "static"

bp = Blueprint("ui", __name__, static_folder=None)

SECURITY_HEADERS = {
    # Only our own scripts and styles; API calls go to this origin alone.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@bp.get("/")
@requires(Access.PUBLIC)
def index() -> Response:
    return _send("index.html")


@bp.get("/ui/<path:path>")
@requires(Access.PUBLIC)
def asset(path: str) -> Response:
    return _send(path)


MIMETYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
"""Set here rather than guessed: a host's mime.types (or Windows registry) can map `.js` to
something a browser refuses to run as a module."""


def _send(path: str) -> Response:
    response = send_from_directory(
        STATIC,
        path,
        mimetype=MIMETYPES.get(Path(path).suffix),
        max_age=0,
        conditional=True,
        etag=True,
    )
    response.headers["Cache-Control"] = "no-cache"
    response.headers.update(SECURITY_HEADERS)
    return response
