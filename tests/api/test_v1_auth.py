"""Operator routes in production mode: `/v1` and `/metrics` need the API token (or the signing
key, or the proxy's auth header); 401 JSON otherwise. Every route and configuration is covered
by test_security_matrix.py; dev mode's own rules by test_dev_mode.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.api.conftest import Api, make_api
from tests.api.openapi_check import check

TOKEN = "s3cret-token"
SIGNING_KEY = "signkey-test-8ee2262a15e8d3c42d6a840db7af3de2aab08ef632b32a37a687f24b34dba3ff"


@pytest.mark.parametrize("path", ["/v1/runs", "/v1/events", "/v1/functions", "/v1/apps"])
def test_token_required(api_factory: Callable[..., Api], path: str) -> None:
    api = api_factory(api_token=TOKEN)
    refused = api.client.get(path)
    assert refused.status_code == 401
    assert check(refused, "get", path)["code"] == "unauthorized"
    wrong = api.client.get(path, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    basic = api.client.get(path, headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status_code == 401
    ok = api.client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    check(ok, "get", path)


def test_metrics_and_writes_need_the_token_too(api_factory: Callable[..., Api]) -> None:
    api = api_factory(api_token=TOKEN)
    assert api.client.get("/metrics").status_code == 401
    assert api.client.post("/v1/cancellations", json={}).status_code == 401
    assert api.client.delete("/v1/runs/x").status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert api.client.get("/metrics", headers=auth).status_code == 200
    assert api.client.delete("/v1/runs/x", headers=auth).status_code == 404


def test_other_routes_follow_their_own_class(api_factory: Callable[..., Api]) -> None:
    api = api_factory(api_token=TOKEN)
    assert api.client.get("/health").status_code == 200
    # No event keys configured in production mode: the event API is closed, not open.
    sent = api.client.post("/e/anykey", json={"name": "a/b"})
    assert sent.status_code == 403
    assert "STEPLINE_EVENT_KEYS" in sent.get_json()["error"]


def test_signing_key_is_production_mode_and_is_accepted(api_factory: Callable[..., Api]) -> None:
    from app.drivers import signing

    api = api_factory(signing_key=SIGNING_KEY)
    assert api.client.get("/v1/runs").status_code == 401
    for token in (SIGNING_KEY, signing.hashed_key(SIGNING_KEY)):
        ok = api.client.get("/v1/runs", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200


def test_proxy_auth_header(api_factory: Callable[..., Api]) -> None:
    api = api_factory(auth_header="X-Forwarded-User")
    assert api.client.get("/v1/runs").status_code == 401
    assert api.client.get("/v1/runs", headers={"X-Forwarded-User": ""}).status_code == 401
    ok = api.client.get("/v1/runs", headers={"X-Forwarded-User": "ada@example.com"})
    assert ok.status_code == 200


def test_dev_mode_is_open(api: Api) -> None:
    assert api.client.get("/v1/runs").status_code == 200
    assert api.client.get("/metrics").status_code == 200


def test_dev_mode_is_open_to_loopback_clients_only(redis_url: str) -> None:
    api = make_api(redis_url)
    assert api.client.get("/v1/runs").status_code == 200
    far = api.client.get("/v1/runs", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert far.status_code == 403
    assert "STEPLINE_API_TOKEN" in far.get_json()["error"]
    assert api.client.get("/v1/runs", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    api.engine.store.close()
