"""`/v1/functions` and `/v1/apps`: listings with triggers, options, URLs and sync times; sync."""

from __future__ import annotations

from typing import Any

import pytest

from app.api import functions as functions_api
from app.models import FunctionConfig, Trigger
from app.sync import SyncError
from tests.api.conftest import Api
from tests.api.openapi_check import check

T0 = 1_700_000_000_000


def _register(api: Api) -> None:
    store = api.engine.store
    store.save_app(
        "shop",
        "http://shop.local/api/inngest",
        [
            FunctionConfig(
                id="shop-charge",
                name="Charge",
                app_id="shop",
                triggers=[Trigger(event="shop/order", expression="event.data.total > 0")],
                retries=2,
                driver="http",
                url="http://shop.local/api/inngest?fnId=shop-charge&stepId=step",
                options={"concurrency": [{"limit": 5}]},
            ),
        ],
        T0,
    )
    store.save_app(
        "local",
        None,
        [
            FunctionConfig(
                id="local-tick", name="tick", app_id="local", triggers=[Trigger(cron="* * * * *")]
            )
        ],
        T0 + 1000,
    )


def test_list_functions(api: Api) -> None:
    _register(api)
    body = check(api.client.get("/v1/functions"), "get", "/v1/functions")
    by_id = {f["id"]: f for f in body["data"]}
    charge = by_id["shop-charge"]
    assert charge["triggers"] == [
        {"event": "shop/order", "expression": "event.data.total > 0", "cron": None, "jitter": None}
    ]
    assert charge["options"] == {"concurrency": [{"limit": 5}]}
    assert charge["app_url"] == "http://shop.local/api/inngest" and charge["driver"] == "http"
    assert charge["last_synced_at"] == "2023-11-14T22:13:20.000Z" and charge["retries"] == 2
    assert by_id["local-tick"]["app_url"] is None and by_id["local-tick"]["url"] is None
    only = check(api.client.get("/v1/functions?app_id=local"), "get", "/v1/functions")
    assert [f["id"] for f in only["data"]] == ["local-tick"]


def test_get_function(api: Api) -> None:
    _register(api)
    path = "/v1/functions/{function_id}"
    body = check(api.client.get("/v1/functions/shop-charge"), "get", path)
    assert body["data"]["name"] == "Charge"
    assert check(api.client.get("/v1/functions/nope"), "get", path)["code"] == "not_found"


def test_list_apps(api: Api) -> None:
    _register(api)
    body = check(api.client.get("/v1/apps"), "get", "/v1/apps")
    by_id = {app["id"]: app for app in body["data"]}
    assert by_id["shop"]["url"] == "http://shop.local/api/inngest"
    assert by_id["shop"]["functions"] == ["shop-charge"]
    assert by_id["local"]["url"] is None and by_id["local"]["synced_at"].endswith("21.000Z")


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    urls: list[str] = []

    def fake_sync(url: str, settings: Any) -> dict[str, Any]:
        urls.append(url)
        if "down" in url:
            raise SyncError(f"app at {url} is unreachable")
        return {"ok": True, "modified": True, "app_id": "shop"}

    monkeypatch.setattr(functions_api, "sync_app", fake_sync)
    return urls


def test_sync_by_url(api: Api, synced: list[str]) -> None:
    response = api.client.post("/v1/apps/sync", json={"url": "http://shop.local/api/inngest"})
    body = check(response, "post", "/v1/apps/sync")
    assert body["data"] == {
        "url": "http://shop.local/api/inngest",
        "app_id": "shop",
        "modified": True,
    }
    assert synced == ["http://shop.local/api/inngest"]
    down = api.client.post("/v1/apps/sync", json={"url": "http://down.local/"})
    assert down.status_code == 502
    assert check(down, "post", "/v1/apps/sync")["code"] == "sync_failed"
    for bad in ({}, {"url": "ftp://x"}, {"url": 3}):
        refused = api.client.post("/v1/apps/sync", json=bad)
        assert check(refused, "post", "/v1/apps/sync")["field"] == "url"


def test_sync_registered_app(api: Api, synced: list[str]) -> None:
    _register(api)
    path = "/v1/apps/{app_id}/sync"
    body = check(api.client.post("/v1/apps/shop/sync"), "post", path)
    assert body["data"]["url"] == "http://shop.local/api/inngest"
    assert synced == ["http://shop.local/api/inngest"]
    assert check(api.client.post("/v1/apps/local/sync"), "post", path)["code"] == "bad_request"
    assert check(api.client.post("/v1/apps/nope/sync"), "post", path)["code"] == "not_found"
