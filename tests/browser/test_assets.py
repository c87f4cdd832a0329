"""The UI's page and assets as Flask serves them (no browser, no Redis)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import pytest
from flask.testing import FlaskClient

from app.api import create_app

if TYPE_CHECKING:
    from app.engine import Engine


@pytest.fixture
def client() -> FlaskClient:
    # A placeholder engine: these routes never touch it (nor Redis).
    app = create_app(cast("Engine", object()))
    app.testing = True
    return app.test_client()


def test_the_page_is_served_at_the_root_with_a_strict_policy(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert b'<script type="module" src="/ui/js/main.js">' in response.data
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    ("path", "mimetype"),
    [
        ("/ui/js/main.js", "text/javascript"),
        ("/ui/js/api.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
        ("/ui/favicon.svg", "image/svg+xml"),
    ],
)
def test_assets_have_their_types_and_revalidate(
    client: FlaskClient, path: str, mimetype: str
) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.mimetype == mimetype
    assert response.headers["Cache-Control"] == "no-cache"
    etag = response.headers["ETag"]
    again = client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304


@pytest.mark.parametrize("path", ["/ui/../ui.py", "/ui/%2e%2e/ui.py", "/ui/nope.js"])
def test_nothing_outside_the_static_folder_is_served(client: FlaskClient, path: str) -> None:
    assert client.get(path).status_code == 404
