"""The security matrix: every route of the app (read from Flask's url_map, so a new route cannot
be left out) x five configurations x {no, wrong, right credential}.

Production mode (any credential configured) fails closed: a missing or wrong credential is 401,
a route whose kind of credential is not configured is 403 `not_configured` naming the setting.
Dev mode checks no credential but serves loopback peers only (see test_dev_mode.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from app.api import create_app
from app.api.auth import Access, Route, requires, route_table
from app.drivers import signing
from tests.api.conftest import Api, make_api

TOKEN = "op-token-9f8e7d"
PROXY_HEADER = "X-Forwarded-User"
SIGNING_KEY = "signkey-test-8ee2262a15e8d3c42d6a840db7af3de2aab08ef632b32a37a687f24b34dba3ff"
OTHER_KEY = "signkey-test-" + "cd" * 32
EVENT_KEY = "ek-live-1234"

CONFIGS: dict[str, dict[str, Any]] = {
    "token only": {"api_token": TOKEN},
    "proxy header only": {"auth_header": PROXY_HEADER},
    "signing key only": {"signing_key": SIGNING_KEY},
    "signing key + event keys": {"signing_key": SIGNING_KEY, "event_keys": [EVENT_KEY]},
    "dev": {},
}
CREDENTIALS = ("none", "wrong", "right")
MISSING_SETTING = {
    Access.SDK: "STEPLINE_SIGNING_KEY",
    Access.EVENTS: "STEPLINE_EVENT_KEYS",
    Access.OPERATOR: "STEPLINE_API_TOKEN",
}
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    headers: dict[str, str]
    json: Any


def configured(settings: dict[str, Any], access: Access) -> bool:
    if access is Access.SDK:
        return "signing_key" in settings
    if access is Access.EVENTS:
        return "event_keys" in settings
    return bool({"api_token", "auth_header", "signing_key"} & settings.keys())


def operator_credential(settings: dict[str, Any], which: str) -> dict[str, str]:
    if which == "none":
        return {}
    if "api_token" in settings:
        return {"Authorization": f"Bearer {TOKEN if which == 'right' else 'op-token-nope'}"}
    if "auth_header" in settings:
        return {PROXY_HEADER: "ada@example.com" if which == "right" else ""}
    key = SIGNING_KEY if which == "right" else OTHER_KEY
    return {"Authorization": signing.bearer_value(key)}


def call_for(route: Route, method: str, settings: dict[str, Any], which: str) -> Call:
    """A request to `route` carrying the `which` credential of the route's class."""
    key = {"none": "NO_EVENT_KEY_SET", "wrong": "ek-nope", "right": EVENT_KEY}[which]
    values = {"event_key": key, "path": "js/api.js"}
    path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values.get(m.group(1), "x1"), route.path)
    headers: dict[str, str] = {}
    if route.access is Access.SDK and which != "none":
        headers["Authorization"] = signing.bearer_value(
            SIGNING_KEY if which == "right" else OTHER_KEY
        )
    if route.access is Access.OPERATOR:
        headers.update(operator_credential(settings, which))
    return Call(method, path, headers, {} if method in ("POST", "PUT", "PATCH") else None)


def expected(route: Route, settings: dict[str, Any], which: str) -> tuple[int | None, str]:
    """(status, what the body must mention); status None: admitted (anything but 401/403)."""
    access = route.access
    assert access is not None
    keyless_events = access is Access.EVENTS and "<event_key>" not in route.path
    if access is Access.PUBLIC:
        return None, ""
    if not settings:  # dev mode: no credential checked (from loopback)
        return (401, "Event key is required") if keyless_events else (None, "")
    if not configured(settings, access):
        return 403, MISSING_SETTING[access]
    if keyless_events:
        return 401, "Event key is required"
    return (None, "") if which == "right" else (401, "")


@pytest.fixture(scope="module")
def apis() -> Iterator[dict[str, Api]]:
    from tests.conftest import REDIS_URL, require_redis

    require_redis().close()
    made = {name: make_api(REDIS_URL, **settings) for name, settings in CONFIGS.items()}
    yield made
    for api in made.values():
        api.engine.store.close()


def test_every_route_declares_its_access_class() -> None:
    undeclared = [route for route in route_table(create_app()) if route.access is None]
    assert undeclared == [], "routes without @requires(Access...) (see app/api/auth.py)"


def test_an_undeclared_route_is_refused(redis_url: str) -> None:
    api = make_api(redis_url)
    api.app.add_url_rule("/v1/forgotten", "forgotten", lambda: "run data")
    response = api.client.get("/v1/forgotten")
    assert response.status_code == 500
    assert "declares no access class" in response.get_json()["error"]
    api.engine.store.close()


@pytest.mark.parametrize("config", list(CONFIGS))
def test_matrix(apis: dict[str, Api], config: str) -> None:
    api, settings = apis[config], CONFIGS[config]
    routes = route_table(api.app)
    assert len(routes) >= 20
    wrong: list[str] = []
    for route in routes:
        for method in route.methods:
            for which in CREDENTIALS:
                call = call_for(route, method, settings, which)
                response = api.client.open(
                    call.path, method=call.method, headers=call.headers, json=call.json
                )
                status, mention = expected(route, settings, which)
                body = response.get_json(silent=True) or {}
                got = f"{response.status_code} {body.get('code')}"
                where = f"{method} {call.path} [{route.access}] with {which} credential: got {got}"
                if status is None and response.status_code in (401, 403):
                    wrong.append(f"{where}, want admitted ({body.get('error')})")
                elif status is not None and response.status_code != status:
                    wrong.append(f"{where}, want {status}")
                elif mention and mention not in str(body.get("error")):
                    wrong.append(f"{where}, want the error to name {mention}: {body}")
    assert wrong == [], "\n".join(wrong)


def test_not_configured_is_403_and_names_the_setting(apis: dict[str, Api]) -> None:
    body = apis["token only"].client.post("/fn/register", json={}).get_json()
    assert body["status"] == 403 and body["code"] == "not_configured"
    assert "STEPLINE_SIGNING_KEY" in body["error"]
    body = apis["signing key only"].client.post("/e/whatever", json={"name": "a/b"}).get_json()
    assert body["code"] == "not_configured" and "STEPLINE_EVENT_KEYS" in body["error"]


def test_a_refused_event_stores_nothing(apis: dict[str, Api]) -> None:
    api = apis["signing key + event keys"]
    before = len(api.sender.job_ids("stepline.event"))
    for key in ("NO_EVENT_KEY_SET", EVENT_KEY[:-1], EVENT_KEY + "x", ""):
        assert api.client.post(f"/e/{key}", json={"name": "a/b"}).status_code == 401
    assert api.client.post(f"/e/{EVENT_KEY}", json={"name": "a/b"}).status_code == 200
    assert len(api.sender.job_ids("stepline.event")) == before + 1


def test_readme_route_table_matches_the_policy() -> None:
    """README.md's "Who may call what" table lists every route with its class."""
    readme = ROOT.joinpath("README.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `([A-Z, ]+) ([^`]+)` \| (\w+) \|", readme, re.MULTILINE))
    table = {
        (", ".join(route.methods), route.path, str(route.access))
        for route in route_table(create_app())
    }
    assert table - rows == set(), "routes missing from the README's route table"
    assert rows - table == set(), "README rows for routes the app does not serve"


def test_requires_marks_a_view_for_new_routes() -> None:
    """How a new route (Connect, signals, checkpoints) joins the policy."""

    @requires(Access.SDK, media_types=("application/protobuf",))
    def connect_start() -> str:
        return ""

    app = Flask("probe", static_folder=None)
    app.add_url_rule("/v0/connect/start", view_func=connect_start, methods=["POST"])
    [route] = route_table(app)
    assert (route.path, route.methods, route.access) == ("/v0/connect/start", ("POST",), "sdk")
