"""Search through the API: `GET /v1/runs?filter=` finds runs by trigger data, output, error,
status and function whether they are live in Redis or archived in the history store (and
pages across both); `GET /v1/events` filters by name, time and CEL; a bad filter is a 400
naming the problem; a search cut short by its bounds says so. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import pytest

from app.history.reads import SearchBounds
from app.models import Trigger
from tests.api.conftest import Api, close, fn, make_api
from tests.api.openapi_check import check
from tests.api.test_v1_history import archive_and_drop, finish


@pytest.fixture
def api(redis_url: str, history_url: str) -> Iterator[Api]:
    made = make_api(redis_url, history_url=history_url)
    made.register(fn("f", Trigger(event="shop/order")), fn("g", Trigger(event="shop/refund")))
    yield made
    close(made)


def _runs(api: Api, name: str, data: dict[str, object]) -> list[str]:
    response = api.client.post("/e/k", json={"name": name, "data": data})
    [event_id] = response.get_json()["ids"]
    api.process_events()
    return [
        run["run_id"] for run in api.client.get(f"/v1/events/{event_id}/runs").get_json()["data"]
    ]


def _search(api: Api, query: str, template: str = "/v1/runs") -> dict[str, object]:
    response = api.client.get(query)
    assert response.status_code == 200, response.get_json()
    return check(response, "get", template)  # type: ignore[no-any-return]


def test_runs_are_found_by_data_output_and_error_in_both_stores(api: Api) -> None:
    archived = {}
    for n in range(6):
        [run_id] = _runs(api, "shop/order", {"n": n, "sku": f"sku-{n % 2}"})
        finish(api, run_id, failed=n % 3 == 0)
        archived[n] = run_id
    archive_and_drop(api)  # gone from Redis: only the history store has them
    live = {}
    for n in range(6, 9):
        [live[n]] = _runs(api, "shop/order", {"n": n, "sku": f"sku-{n % 2}"})

    def ids(expr: str, extra: str = "") -> list[str]:
        body = _search(api, f"/v1/runs?limit=100&filter={quote(expr)}{extra}")
        assert body["metadata"]["partial"] is False  # type: ignore[index]
        return [run["run_id"] for run in body["data"]]  # type: ignore[attr-defined]

    assert ids('event.data.sku == "sku-1"') == [live[7], archived[5], archived[3], archived[1]]
    assert ids("event.data.n >= 4 && event.data.n < 7") == [live[6], archived[5], archived[4]]
    assert ids('error.message.contains("failed")') == [archived[3], archived[0]]
    assert ids('output.ok.startsWith("01")', "&status=Completed") == [
        archived[n] for n in (5, 4, 2, 1)
    ]
    assert ids("event.data.n % 2 == 0 && status == 'Queued'") == [live[8], live[6]]
    assert ids("true", "&function_id=g") == []

    walked: list[str] = []
    cursor = ""
    while True:
        body = _search(api, f"/v1/runs?limit=2&filter={quote('event.data.n != 4')}{cursor}")
        walked += [run["run_id"] for run in body["data"]]  # type: ignore[attr-defined]
        next_cursor = body["metadata"]["next_cursor"]  # type: ignore[index]
        if next_cursor is None:
            break
        cursor = f"&cursor={next_cursor}"
    assert walked == [live[8], live[7], live[6], *(archived[n] for n in (5, 3, 2, 1, 0))]


def test_a_search_cut_short_by_its_bounds_says_partial_and_goes_on(api: Api) -> None:
    runs = [_runs(api, "shop/order", {"n": n})[0] for n in range(12)]
    original = SearchBounds.__init__.__defaults__  # type: ignore[misc]
    SearchBounds.__init__.__defaults__ = (5, 5, 5, 5)  # type: ignore[misc]
    try:
        body = _search(api, f"/v1/runs?limit=10&filter={quote('event.data.n == 1')}")
        assert body["data"] == []
        meta = body["metadata"]
        assert meta["partial"] is True and "partial" in meta["message"]  # type: ignore[index]
        found: list[str] = []
        cursor = meta["next_cursor"]  # type: ignore[index]
        while cursor:
            page = _search(
                api, f"/v1/runs?limit=10&filter={quote('event.data.n == 1')}&cursor={cursor}"
            )
            found += [run["run_id"] for run in page["data"]]  # type: ignore[attr-defined]
            cursor = page["metadata"]["next_cursor"]  # type: ignore[index]
        assert found == [runs[1]]
    finally:
        SearchBounds.__init__.__defaults__ = original  # type: ignore[misc]


def test_events_by_name_time_and_filter(api: Api) -> None:
    ids = []
    for n in range(4):
        name = "shop/order" if n % 2 == 0 else "shop/refund"
        response = api.client.post("/e/k", json={"name": name, "data": {"n": n}})
        ids.append(response.get_json()["ids"][0])
    archive_and_drop(api)
    response = api.client.post("/e/k", json={"name": "shop/order", "data": {"n": 9}})
    ids.append(response.get_json()["ids"][0])
    body = _search(api, "/v1/events?name=shop/order", "/v1/events")
    assert [e["internal_id"] for e in body["data"]] == [ids[4], ids[2], ids[0]]  # type: ignore[attr-defined]
    body = _search(api, f"/v1/events?filter={quote('event.data.n > 1')}", "/v1/events")
    assert [e["internal_id"] for e in body["data"]] == [ids[4], ids[3], ids[2]]  # type: ignore[attr-defined]
    first = api.client.get(f"/v1/events/{ids[1]}").get_json()["data"]["received_at"]
    body = _search(api, f"/v1/events?name=shop/refund&since={quote(first)}", "/v1/events")
    assert [e["internal_id"] for e in body["data"]] == [ids[3], ids[1]]  # type: ignore[attr-defined]
    body = _search(api, f"/v1/events?name=shop/refund&until={quote(first)}", "/v1/events")
    assert body["data"] == []


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("/v1/runs?filter=" + quote("event.data.n =="), "invalid expression"),
        ("/v1/runs?filter=" + quote("evnt.data.n == 1"), "unknown name 'evnt'"),
        ("/v1/events?filter=" + quote("status == 'Failed'"), "unknown name 'status'"),
        ("/v1/events?since=yesterday", "since must be"),
        ("/v1/events?since=1&after=2", "not both"),
    ],
)
def test_bad_filters_are_400_naming_the_problem(api: Api, url: str, needle: str) -> None:
    response = api.client.get(url)
    assert response.status_code == 400
    body = response.get_json()
    assert needle in body["error"] and body["code"] == "bad_request"
    assert body["field"] in ("filter", "since", "after")
