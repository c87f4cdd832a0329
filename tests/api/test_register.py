"""`POST /fn/register` and the run data API (`/v0/runs/<id>/batch|actions`) over the real API
and Redis: what SDKs send is stored, invalid functions are refused by name, ownership is checked
in the same Lua call as the write, and app URLs go through the outbound address policy."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

from app.drivers import signing
from app.state.records import NewRun
from tests.api.conftest import Api
from tests.sdk_apps.captures import CLOUD_SIGNING_KEY, PY_REGISTER, TS_REGISTER
from tests.sdk_apps.harness import free_port

AUTH = {"Authorization": signing.bearer_value(CLOUD_SIGNING_KEY)}
PRODUCTION: dict[str, Any] = {"signing_key": CLOUD_SIGNING_KEY, "allowed_app_hosts": ["localhost"]}
"""The captures register `http://localhost/api/inngest`: loopback, allowed by name."""


def with_function(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(PY_REGISTER["body"])
    body["functions"][1].update(changes)
    return body


def app_named(body: dict[str, Any], app_id: str, url: str | None = None) -> dict[str, Any]:
    """`body` as app `app_id` (function ids follow the app id, as the SDKs make them)."""
    out: dict[str, Any] = copy.deepcopy(body)
    out["appname"] = app_id
    if url is not None:
        out["url"] = url
    for fn in out["functions"]:
        fn["id"] = fn["id"].replace("cap-", f"{app_id}-", 1)
        runtime = fn["steps"]["step"]["runtime"]
        runtime["url"] = f"{out['url']}?fnId={fn['id']}&stepId=step"
    return out


def apps(api: Api) -> dict[str, dict[str, Any]]:
    return {str(app["id"]): app for app in api.engine.store.list_apps()}


def test_register_stores_functions(api: Api) -> None:
    first = api.client.post(
        "/fn/register", json=TS_REGISTER["body"], headers=TS_REGISTER["headers"]
    )
    assert (first.status_code, first.json) == (200, {"ok": True, "modified": True, "app_id": "cap"})
    again = api.client.post(
        "/fn/register", json=TS_REGISTER["body"], headers=TS_REGISTER["headers"]
    )
    assert again.json == {"ok": True, "modified": False, "app_id": "cap"}
    assert apps(api)["cap"]["url"] == TS_REGISTER["body"]["url"]
    fns = api.engine.store.list_functions()
    assert len(fns) == 8 and all(fn.driver == "http" and fn.app_id == "cap" for fn in fns)


def test_register_refuses_invalid_functions_and_keeps_the_valid_ones(api: Api) -> None:
    body = with_function(triggers=[{"cron": "nope"}])
    reply = api.client.post("/fn/register", json=body)
    assert reply.status_code == 400 and reply.json is not None
    assert reply.json["field"] == "functions[1].triggers[0].cron"
    assert "cap-ops" in reply.json["error"]
    assert [e["field"] for e in reply.json["errors"]] == ["functions[1].triggers[0].cron"]
    ids = [fn.id for fn in api.engine.store.list_functions()]
    assert "cap-ops" not in ids
    assert sorted(reply.json["registered"]) == sorted(ids)
    assert len(ids) == len(body["functions"]) - 1


def test_register_refuses_an_app_whose_functions_are_all_invalid(api: Api) -> None:
    body = with_function(triggers=[{"cron": "nope"}])
    body["functions"] = [body["functions"][1]]
    reply = api.client.post("/fn/register", json=body)
    assert reply.status_code == 400 and reply.json is not None and reply.json["registered"] == []
    assert apps(api) == {}


def test_register_refuses_non_json(api: Api) -> None:
    reply = api.client.post("/fn/register", data=b"<xml/>", content_type="application/json")
    assert reply.status_code == 400


def test_register_checks_expected_server_kind(api_factory: Callable[..., Api]) -> None:
    dev, prod = api_factory(), api_factory(**PRODUCTION)
    cloud = {"X-Inngest-Expected-Server-Kind": "cloud"}
    reply = dev.client.post("/fn/register", json=PY_REGISTER["body"], headers=cloud)
    assert reply.status_code == 400
    assert reply.json is not None and "dev mode" in reply.json["error"]
    expect_dev = {**AUTH, "X-Inngest-Expected-Server-Kind": "dev"}
    reply = prod.client.post("/fn/register", json=PY_REGISTER["body"], headers=expect_dev)
    assert reply.status_code == 400


def test_production_register_needs_the_hashed_key(api_factory: Callable[..., Api]) -> None:
    api = api_factory(**PRODUCTION)
    for headers in ({}, {"Authorization": "Bearer undefined"}, {"Authorization": "Bearer 00"}):
        reply = api.client.post("/fn/register", json=PY_REGISTER["body"], headers=headers)
        assert reply.status_code == 401
        assert reply.json is not None and "signing key" in reply.json["error"]
    hashed = signing.hashed_key(CLOUD_SIGNING_KEY)
    for token in (hashed, f"signkey-test-{hashed}"):
        reply = api.client.post(
            "/fn/register",
            json=PY_REGISTER["body"],
            headers={"Authorization": f"Bearer {token}", "X-Inngest-Expected-Server-Kind": "cloud"},
        )
        assert reply.status_code == 200, reply.json
    assert "cap" in apps(api)


def test_run_data_api(api_factory: Callable[..., Api]) -> None:
    for api, headers in ((api_factory(), {}), (api_factory(**PRODUCTION), AUTH)):
        event = {"name": "cap/three", "data": {}, "id": "e1", "ts": 1, "user": {}}
        run = NewRun(
            run_id="01HRUN", function_id="cap-three", events=[event], event_ids=[], created_at=1
        )
        api.engine.store.create_run(run)
        assert api.client.get("/v0/runs/01HRUN/batch", headers=headers).json == [event]
        assert api.client.get("/v0/runs/01HRUN/actions", headers=headers).json == {}
        assert api.client.get("/v0/runs/nope/batch", headers=headers).status_code == 410
        assert api.client.get("/v0/runs/nope/actions", headers=headers).status_code == 410
        if headers:
            assert api.client.get("/v0/runs/01HRUN/actions").status_code == 401
            operator = {"Authorization": "Bearer some-api-token"}
            assert api.client.get("/v0/runs/01HRUN/actions", headers=operator).status_code == 401


# --- ownership, atomically ------------------------------------------------------------------


def test_a_function_owned_by_another_app_is_refused(api: Api) -> None:
    assert api.client.post("/fn/register", json=PY_REGISTER["body"]).status_code == 200
    thief = copy.deepcopy(PY_REGISTER["body"])
    thief["appname"] = "thief"
    thief["url"] = "http://127.0.0.1:9/api/inngest"
    reply = api.client.post("/fn/register", json=thief)
    assert reply.status_code == 409 and reply.json is not None
    assert "already belongs to app 'cap'" in reply.json["error"]
    assert set(apps(api)) == {"cap"}
    assert {fn.app_id for fn in api.engine.store.list_functions()} == {"cap"}


def test_an_in_process_app_cannot_be_claimed(api: Api) -> None:
    from tests.api.conftest import fn

    api.register(fn("local"), app_id="app")  # the engine publishing its in-process functions
    claim = app_named(PY_REGISTER["body"], "app", url="http://127.0.0.1:9/api/inngest")
    reply = api.client.post("/fn/register", json=claim)
    assert reply.status_code == 409 and reply.json is not None
    assert "in-process" in reply.json["error"] and reply.json["field"] == "appName"
    assert apps(api)["app"]["url"] is None
    assert [f.id for f in api.engine.store.list_functions()] == ["app-local"]


def test_production_url_changes_need_the_signing_key(api_factory: Callable[..., Api]) -> None:
    api = api_factory(
        **{**PRODUCTION, "api_token": "op-token", "allowed_app_hosts": ["localhost", "127.0.0.1"]}
    )
    assert (
        api.client.post("/fn/register", json=PY_REGISTER["body"], headers=AUTH).status_code == 200
    )
    moved = app_named(PY_REGISTER["body"], "cap", url="http://127.0.0.1:9/api/inngest")
    for headers in ({}, {"Authorization": "Bearer op-token"}, {"X-Inngest-SDK": "py"}):
        assert api.client.post("/fn/register", json=moved, headers=headers).status_code == 401
        assert apps(api)["cap"]["url"] == PY_REGISTER["body"]["url"]
    assert api.client.post("/fn/register", json=moved, headers=AUTH).status_code == 200
    assert apps(api)["cap"]["url"] == "http://127.0.0.1:9/api/inngest"


def test_concurrent_registrations_of_one_app_name(api: Api) -> None:
    """Eight callers register app `cap` at once, each with its own URL and function set: the
    end state is wholly one of them (record, function set and every function's URL agree)."""
    bodies = []
    for n in range(8):
        body = app_named(PY_REGISTER["body"], "cap", url=f"http://127.0.0.1:{9000 + n}/api")
        body["functions"] = body["functions"][: 2 + n % 4]
        bodies.append(body)
    answers: list[int] = []
    start = threading.Barrier(len(bodies))

    def register(body: dict[str, Any]) -> None:
        client = api.app.test_client()
        start.wait()
        answers.append(client.post("/fn/register", json=body).status_code)

    threads = [threading.Thread(target=register, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [200] * len(bodies)
    record = apps(api)["cap"]
    winner = next(body for body in bodies if body["url"] == record["url"])
    fns = api.engine.store.list_functions()
    assert sorted(record["functions"]) == sorted(fn["id"] for fn in winner["functions"])
    assert sorted(fn.id for fn in fns) == sorted(record["functions"])
    assert all(fn.url is not None and fn.url.startswith(winner["url"]) for fn in fns)


def _claim(
    api: Api, app_id: str, fn_id: str, start: threading.Barrier, out: dict[str, int]
) -> None:
    body = app_named(PY_REGISTER["body"], app_id, url=f"http://127.0.0.1:9/{app_id}")
    body["functions"] = [body["functions"][0]]
    body["functions"][0]["id"] = fn_id
    client = api.app.test_client()
    start.wait()
    out[app_id] = client.post("/fn/register", json=body).status_code


def test_concurrent_claims_of_one_function_id(api: Api) -> None:
    """Two apps register the same function id at once, twenty times: exactly one gets it."""
    for round_ in range(20):
        fn_id, answers, start = f"shared-{round_}", {}, threading.Barrier(2)
        threads = [
            threading.Thread(target=_claim, args=(api, f"a{round_}-{n}", fn_id, start, answers))
            for n in (1, 2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(answers.values()) == [200, 409], answers
        winner = next(app_id for app_id, status in answers.items() if status == 200)
        owner = api.engine.store.get_function(fn_id)
        assert owner is not None and owner.app_id == winner


# --- app URLs and the outbound address policy ---------------------------------------------------


def test_production_refuses_private_app_urls_unless_allowed(
    api_factory: Callable[..., Api],
) -> None:
    port = free_port()  # nothing listens there: registration never connects anyway
    api = api_factory(signing_key=CLOUD_SIGNING_KEY, allowed_app_hosts=[f"127.0.0.1:{port + 1}"])
    for url in (
        f"http://127.0.0.1:{port}/api/inngest",  # another loopback port
        "http://localhost/api/inngest",
        "http://10.1.2.3/api/inngest",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
    ):
        reply = api.client.post(
            "/fn/register", json=app_named(PY_REGISTER["body"], "x", url), headers=AUTH
        )
        assert reply.status_code == 400, url
        assert reply.json is not None and reply.json["code"] == "address_refused", reply.json
        assert reply.json["field"] == "url"
    allowed = app_named(PY_REGISTER["body"], "x", f"http://127.0.0.1:{port + 1}/api/inngest")
    assert api.client.post("/fn/register", json=allowed, headers=AUTH).status_code == 200
    assert set(apps(api)) == {"x"}


def test_runtime_urls_are_checked_too(api_factory: Callable[..., Api]) -> None:
    api = api_factory()  # dev mode: private addresses are fine, link-local never is
    body = app_named(PY_REGISTER["body"], "x", "http://127.0.0.1:9/api/inngest")
    body["functions"][1]["steps"]["step"]["runtime"]["url"] = "http://169.254.169.254/?fnId=x"
    reply = api.client.post("/fn/register", json=body)
    assert reply.status_code == 400 and reply.json is not None
    assert reply.json["code"] == "address_refused" and "link-local" in reply.json["error"]
    assert reply.json["field"].startswith("functions[")
    assert apps(api) == {}
    body["functions"][1]["steps"]["step"]["runtime"]["url"] = "http://127.0.0.1:9/?fnId=x"
    assert api.client.post("/fn/register", json=body).status_code == 200


def test_sync_by_url_goes_through_the_address_policy(api_factory: Callable[..., Api]) -> None:
    """`POST /v1/apps/sync {"url"}` asks Stepline itself to call the URL: the same policy
    (that `sync_app` refuses before connecting is proved in tests/unit/test_netpolicy.py)."""
    from tests.api.openapi_check import check

    port = free_port()
    for api, url in (
        (api_factory(), "http://169.254.169.254/latest/meta-data/"),
        (api_factory(api_token="t"), f"http://127.0.0.1:{port}/api/inngest"),
    ):
        headers = {"Authorization": "Bearer t"}
        reply = api.client.post("/v1/apps/sync", json={"url": url}, headers=headers)
        body = check(reply, "post", "/v1/apps/sync")
        assert (reply.status_code, body["code"]) == (400, "address_refused"), body
