"""Dev mode against web pages: loopback peers only, a Host a rebinding page cannot produce, no
state-changing request from another origin, JSON bodies declared as JSON. The origin and
content-type rules hold in production mode too (an authenticating proxy's cookie would
otherwise let a page act as the signed-in user)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.api.conftest import Api
from tests.api.openapi_check import check
from tests.sdk_apps.captures import PY_REGISTER, TS_REGISTER

REGISTER = PY_REGISTER["body"]


def apps(api: Api) -> list[str]:
    return [str(app["id"]) for app in api.engine.store.list_apps()]


@pytest.mark.parametrize(
    "host", ["localhost:8288", "localhost", "127.0.0.1:8288", "[::1]:8288", "app.localhost:8288"]
)
def test_local_host_headers_are_served(api: Api, host: str) -> None:
    assert api.client.get("/v1/runs", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example:8288", "evil.example", "localhost.evil.example"])
def test_rebinding_host_names_are_refused(api: Api, host: str) -> None:
    """DNS rebinding: a page on evil.example makes its name resolve to 127.0.0.1 and reads."""
    read = api.client.get("/v1/runs", headers={"Host": host})
    assert check(read, "get", "/v1/runs")["status"] == 403
    assert read.get_json()["field"] == "Host" and "DNS rebinding" in read.get_json()["error"]
    register = api.client.post("/fn/register", json=REGISTER, headers={"Host": host})
    assert register.status_code == 403
    assert api.client.get("/v0/runs/x/actions", headers={"Host": host}).status_code == 403
    assert apps(api) == []


def test_public_routes_ignore_host_and_peer(api: Api) -> None:
    elsewhere = {"headers": {"Host": "evil.example"}, "environ_base": {"REMOTE_ADDR": "10.0.0.9"}}
    assert api.client.get("/health", **elsewhere).status_code == 200
    assert api.client.get("/", **elsewhere).status_code == 200


@pytest.mark.parametrize("peer", ["10.1.2.3", "192.168.1.20", "172.17.0.1", "fd00::1"])
def test_remote_peers_are_refused_on_every_non_public_route(api: Api, peer: str) -> None:
    environ = {"REMOTE_ADDR": peer}
    assert api.client.post("/fn/register", json=REGISTER, environ_base=environ).status_code == 403
    assert api.client.post("/e/k", json={"name": "a/b"}, environ_base=environ).status_code == 403
    assert api.client.get("/v0/runs/x/batch", environ_base=environ).status_code == 403
    assert api.client.get("/metrics", environ_base=environ).status_code == 403
    assert apps(api) == [] and api.sender.sent == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://localhost:9999"},  # another port is another origin
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://localhost"},
    ],
)
def test_cross_origin_writes_are_refused(api: Api, headers: dict[str, str]) -> None:
    """CSRF: a page POSTs to 127.0.0.1:8288 to register its own app URL or send events."""
    register = api.client.post("/fn/register", json=REGISTER, headers=headers)
    assert register.status_code == 403, register.get_json()
    assert "cross-origin" in register.get_json()["error"]
    assert api.client.post("/e/k", json={"name": "a/b"}, headers=headers).status_code == 403
    assert api.client.post("/v1/runs/x/cancel", headers=headers).status_code == 403
    assert api.client.delete("/v1/runs/x", headers=headers).status_code == 403
    assert apps(api) == [] and api.sender.sent == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://localhost"},  # the test client's Host is `localhost`
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},  # typed into the address bar, a bookmark
        {},  # not a browser: curl, the SDKs
    ],
)
def test_same_origin_and_non_browser_writes_pass(api: Api, headers: dict[str, str]) -> None:
    assert api.client.post("/e/k", json={"name": "a/b"}, headers=headers).status_code == 200


def test_cross_origin_reads_are_left_to_the_browser(api: Api) -> None:
    """A cross-origin GET gets no CORS header, so the page cannot read the answer."""
    response = api.client.get("/v1/runs", headers={"Sec-Fetch-Site": "cross-site"})
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded"],
)
def test_json_routes_want_json(api: Api, content_type: str | None) -> None:
    """The body types a page can send without a CORS preflight are refused."""
    body = json.dumps(REGISTER)
    response = api.client.post("/fn/register", data=body, content_type=content_type)
    assert response.status_code == 415
    assert response.get_json()["field"] == "Content-Type"
    sync = api.client.post("/v1/apps/sync", data="{}", content_type=content_type)
    assert check(sync, "post", "/v1/apps/sync")["code"] == "unsupported_media_type"
    assert apps(api) == []


def test_the_ts_sdk_registers_with_text_plain(api: Api) -> None:
    """TS 4.24.0 POSTs /fn/register without a Content-Type (fetch sends text/plain) but with
    X-Inngest-SDK, which no page can add without a preflight Stepline never approves."""
    headers = {**TS_REGISTER["headers"], "X-Inngest-SDK": "inngest-js:v4.24.0"}
    response = api.client.post(
        "/fn/register",
        data=json.dumps(TS_REGISTER["body"]),
        content_type="text/plain;charset=UTF-8",
        headers=headers,
    )
    assert response.status_code == 200, response.get_json()
    assert apps(api) == ["cap"]


def test_requests_without_a_body_need_no_content_type(api: Api) -> None:
    assert api.client.post("/v1/runs/nope/cancel").status_code == 404


def test_production_refuses_cross_origin_writes_even_with_the_proxy_header(
    api_factory: Callable[..., Api],
) -> None:
    """Behind an authenticating proxy, the browser's cookie makes the proxy add the header for
    any page's request: the origin check is what stops a cross-site cancel."""
    api = api_factory(auth_header="X-Forwarded-User")
    signed_in = {"X-Forwarded-User": "ada@example.com"}
    cross = {**signed_in, "Sec-Fetch-Site": "cross-site"}
    assert api.client.post("/v1/runs/nope/cancel", headers=cross).status_code == 403
    assert api.client.post("/v1/runs/nope/cancel", headers=signed_in).status_code == 404
    text = {**signed_in, "Content-Type": "text/plain"}
    assert api.client.post("/v1/apps/sync", data="{}", headers=text).status_code == 415
    # Production mode serves any peer and Host: the credential is the check.
    far = {"environ_base": {"REMOTE_ADDR": "10.1.2.3"}, "headers": {**signed_in, "Host": "x.io"}}
    assert api.client.get("/v1/runs", **far).status_code == 200
