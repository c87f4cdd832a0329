"""`POST /v1/cancellations`: bulk cancel of a function's queued and running runs in a window."""

from __future__ import annotations

import pytest

from app.models import Trigger
from app.state.store import NewRun
from tests.api.conftest import Api, fn
from tests.api.openapi_check import check

T0 = 1_700_000_000_000
PATH = "/v1/cancellations"


def _seed(api: Api) -> None:
    api.register(fn("f", Trigger(event="a/b")), fn("g", Trigger(event="a/b")))
    store = api.engine.store
    for i in range(7):
        for function in ("app-f", "app-g"):
            run_id = f"{function[-1]}{i}"
            store.create_run(NewRun(run_id, function, [{"name": "a/b"}], [], T0 + i * 1000))
    store.mark_started("f1", T0 + 10_000)
    store.mark_started("f2", T0 + 10_000)
    store.finish_run("f3", "Completed", None, None, T0 + 11_000)


def _status(api: Api, run_id: str) -> str:
    view = api.engine.store.get_run(run_id)
    assert view is not None
    return view.status


@pytest.fixture
def api_variant(api: Api) -> Api:
    return api


def test_cancels_queued_and_running_runs_in_the_window(api_variant: Api) -> None:
    api = api_variant
    _seed(api)
    body = {"function_id": "app-f", "started_after": T0 + 1000, "started_before": T0 + 5000}
    data = check(api.client.post(PATH, json=body), "post", PATH)["data"]
    assert data == {
        "function_id": "app-f",
        "started_after": "2023-11-14T22:13:21.000Z",
        "started_before": "2023-11-14T22:13:25.000Z",
        "cancelled": 3,  # f1, f2 (running), f4 (queued); f3 had completed
    }
    statuses = {f"f{i}": _status(api, f"f{i}") for i in range(7)}
    assert statuses == {
        "f0": "Queued",
        "f1": "Cancelled",
        "f2": "Cancelled",
        "f3": "Completed",
        "f4": "Cancelled",
        "f5": "Queued",
        "f6": "Queued",
    }
    assert all(_status(api, f"g{i}") == "Queued" for i in range(7))


def test_without_a_window_cancels_every_live_run_in_small_batches(
    api_variant: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.api import cancellations

    api = api_variant
    _seed(api)
    monkeypatch.setattr(cancellations, "BATCH", 2)
    data = check(api.client.post(PATH, json={"function_id": "app-g"}), "post", PATH)["data"]
    assert data["cancelled"] == 7 and data["started_after"] is None
    assert all(_status(api, f"g{i}") == "Cancelled" for i in range(7))
    again = check(api.client.post(PATH, json={"function_id": "app-g"}), "post", PATH)
    assert again["data"]["cancelled"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "function_id"),
        ({"function_id": 1}, "function_id"),
        ({"function_id": "app-f", "started_after": "nope"}, "started_after"),
        ({"function_id": "app-f", "started_before": True}, "started_before"),
        ({"function_id": "app-f", "started_after": T0 + 5, "started_before": T0}, "started_after"),
    ],
)
def test_bad_bodies_are_400(api: Api, body: dict[str, object], field: str) -> None:
    _seed(api)
    answer = check(api.client.post(PATH, json=body), "post", PATH)
    assert answer["code"] == "bad_request" and answer["field"] == field


def test_if_expression_selects_runs(api_variant: Api) -> None:
    api = api_variant
    api.register(fn("f", Trigger(event="a/b")))
    store = api.engine.store
    for i in range(4):
        event = {"name": "a/b", "data": {"vip": i % 2 == 0}}
        store.create_run(NewRun(f"f{i}", "app-f", [event], [], T0 + i))
    body = {"function_id": "app-f", "if": "event.data.vip == true"}
    assert check(api.client.post(PATH, json=body), "post", PATH)["data"]["cancelled"] == 2
    assert [_status(api, f"f{i}") for i in range(4)] == [
        "Cancelled",
        "Queued",
        "Cancelled",
        "Queued",
    ]
    bad = check(api.client.post(PATH, json={"function_id": "app-f", "if": "(("}), "post", PATH)
    assert bad["field"] == "if"


def test_unknown_function_is_404(api: Api) -> None:
    answer = check(api.client.post(PATH, json={"function_id": "app-nope"}), "post", PATH)
    assert answer["code"] == "not_found"
