"""`POST /e/<key>`: validation, limits, keys, dedupe, and what the events trigger."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest

from app.expressions import prepare_pause
from app.models import JSON, Pause, Trigger
from app.runner import MAX_START_AHEAD_MS, seeded_ids
from tests.api.conftest import Api, fn


def post(api: Api, body: Any, key: str = "test-key", **kwargs: Any) -> Any:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return api.client.post(f"/e/{key}", data=data, content_type="application/json", **kwargs)


# --- accepted -------------------------------------------------------------------------------


def test_one_event(api: Api) -> None:
    response = post(api, {"name": "app/user.created", "data": {"id": 1}})
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == 200
    [event_id] = body["ids"]
    record = api.engine.store.get_event(event_id)
    assert record is not None
    assert record.event["name"] == "app/user.created"
    assert record.event["data"] == {"id": 1}
    assert record.event["id"] == event_id  # no user id: the internal id
    assert record.event["user"] == {}
    assert isinstance(record.event["ts"], int) and record.event["ts"] > 0
    assert api.sender.job_ids("stepline.event") == [f"event:{event_id}"]


def test_batch_answers_one_id_per_event_in_order(api: Api) -> None:
    events = [{"name": f"app/e{i}", "data": {"i": i}} for i in range(3)]
    ids = post(api, events).get_json()["ids"]
    assert len(ids) == 3 and len(set(ids)) == 3
    names = []
    for event_id in ids:
        record = api.engine.store.get_event(event_id)
        assert record is not None
        names.append(record.event["name"])
    assert names == ["app/e0", "app/e1", "app/e2"]


def test_empty_batch(api: Api) -> None:
    response = post(api, [])
    assert response.status_code == 200
    assert response.get_json() == {"ids": [], "status": 200}


def test_optional_fields_are_kept_and_null_means_default(api: Api) -> None:
    event = {
        "name": "a/b",
        "data": None,
        "user": None,
        "id": "u-1",
        "ts": 1_700_000_000_000,
        "v": "2024-01-01.1",
        "extra": "ignored",
    }
    [event_id] = post(api, event).get_json()["ids"]
    record = api.engine.store.get_event(event_id)
    assert record is not None
    assert record.event == {
        "name": "a/b",
        "data": {},
        "id": "u-1",
        "ts": 1_700_000_000_000,
        "user": {},
        "v": "2024-01-01.1",
    }


def test_inngest_metadata_is_stripped(api: Api) -> None:
    forged = {"name": "a/b", "data": {"x": 1, "_inngest": {"fn_id": "app-f"}}}
    [event_id] = post(api, forged).get_json()["ids"]
    record = api.engine.store.get_event(event_id)
    assert record is not None and record.event["data"] == {"x": 1}


def test_a_body_must_be_declared_json(api: Api) -> None:
    body = json.dumps({"name": "a/b"})
    for content_type in (None, "text/plain", "application/x-www-form-urlencoded"):
        response = api.client.post("/e/key", data=body, content_type=content_type)
        assert response.status_code == 415, content_type
        assert response.get_json()["code"] == "unsupported_media_type"
    declared = api.client.post("/e/key", data=body, content_type="application/json; charset=utf-8")
    assert declared.status_code == 200
    # What the TS SDK sends: fetch's default text/plain, with its X-Inngest-SDK header.
    sdk = api.client.post(
        "/e/key",
        data=body,
        content_type="text/plain;charset=UTF-8",
        headers={"X-Inngest-SDK": "inngest-js:v4.24.0"},
    )
    assert sdk.status_code == 200
    assert len(api.sender.job_ids("stepline.event")) == 2  # the refused ones stored nothing


# --- refused --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("{not json", "body"),
        ("", "body"),
        ('{"name": NaN}', "events[0].name"),
        ('[{"name": "a"}, {"name": "b", "data": {"x": 1e999}}]', "events[1].data.x"),
        ('"a string"', "body"),
        ("42", "body"),
        ([{"name": "ok"}, "not an object"], "events[1]"),
        ({"data": {}}, "events[0].name"),
        ({"name": ""}, "events[0].name"),
        ({"name": "   "}, "events[0].name"),
        ({"name": 5}, "events[0].name"),
        ({"name": None}, "events[0].name"),
        ([{"name": "ok"}, {"name": "ok"}, {"nom": "x"}], "events[2].name"),
        ({"name": "a/b", "data": [1, 2]}, "events[0].data"),
        ({"name": "a/b", "data": "x"}, "events[0].data"),
        ({"name": "a/b", "user": "x"}, "events[0].user"),
        ({"name": "a/b", "id": 5}, "events[0].id"),
        ({"name": "a/b", "id": {"a": 1}}, "events[0].id"),
        ({"name": "a/b", "ts": "2024-01-01"}, "events[0].ts"),
        ({"name": "a/b", "ts": 1.5}, "events[0].ts"),
        ({"name": "a/b", "ts": True}, "events[0].ts"),
        ({"name": "a/b", "ts": 1_700_000_000}, "events[0].ts"),  # seconds, not ms
        ({"name": "a/b", "ts": 5_000_000_000_000}, "events[0].ts"),  # after 2100
        ({"name": "a/b", "ts": -1}, "events[0].ts"),
        ({"name": "a/b", "v": 2}, "events[0].v"),
        ({"name": "inngest/function.invoked"}, "events[0].name"),
        ({"name": "inngest/function.finished", "data": {"correlation_id": "x"}}, "events[0].name"),
        ({"name": "Inngest/anything"}, "events[0].name"),
    ],
)
def test_bad_requests_name_the_field(api: Api, body: Any, field: str) -> None:
    response = post(api, body)
    assert response.status_code == 400
    answer = response.get_json()
    assert answer["code"] == "bad_request"
    assert answer["status"] == 400
    assert answer["field"] == field
    assert answer["error"]
    assert api.sender.sent == []  # nothing of the request was accepted


def test_reserved_names_say_so(api: Api) -> None:
    answer = post(api, {"name": "inngest/function.invoked"}).get_json()
    assert "reserved" in answer["error"]


def test_integral_float_ts_is_accepted(api: Api) -> None:
    [event_id] = post(api, {"name": "a/b", "ts": 1_700_000_000_000.0}).get_json()["ids"]
    record = api.engine.store.get_event(event_id)
    assert record is not None and record.event["ts"] == 1_700_000_000_000


def test_ts_more_than_a_year_ahead_is_400(api: Api) -> None:
    """Runs of an event start at its ts: one dated 2099 would leave a Queued run in Redis for
    75 years. A year ahead is the most an event may schedule."""
    now = api.engine.now()
    far = post(api, [{"name": "a/b"}, {"name": "a/b", "ts": now + MAX_START_AHEAD_MS + 60_000}])
    assert far.status_code == 400
    answer = far.get_json()
    assert answer["field"] == "events[1].ts" and "365 days ahead" in answer["error"]
    assert api.sender.sent == []
    near = post(api, {"name": "a/b", "ts": now + MAX_START_AHEAD_MS - 60_000})
    assert near.status_code == 200


def test_event_over_256_kib_is_413(api: Api) -> None:
    big = {"name": "a/b", "data": {"blob": "x" * (256 * 1024)}}
    response = post(api, [{"name": "small"}, big])
    assert response.status_code == 413
    answer = response.get_json()
    assert answer["code"] == "payload_too_large" and answer["field"] == "events[1]"
    assert api.sender.sent == []


def test_event_just_under_the_limit_is_accepted(api: Api) -> None:
    overhead = len(json.dumps({"name": "a/b", "data": {"blob": ""}}, separators=(",", ":")))
    event = {"name": "a/b", "data": {"blob": "x" * (256 * 1024 - overhead)}}
    assert post(api, event).status_code == 200


def test_request_over_3_mib_is_413(api: Api) -> None:
    events = [{"name": "a/b", "data": {"blob": "x" * (200 * 1024)}} for _ in range(16)]
    response = post(api, events)
    assert response.status_code == 413
    assert response.get_json()["code"] == "payload_too_large"
    assert api.sender.sent == []


def test_too_many_events(api: Api) -> None:
    response = post(api, [{"name": "a"}] * 5001)
    assert response.status_code == 400
    assert response.get_json()["field"] == "events"


# --- keys -----------------------------------------------------------------------------------


def test_any_key_in_dev_mode(api: Api) -> None:
    assert post(api, {"name": "a/b"}, key="whatever").status_code == 200


def test_configured_keys(api_factory: Callable[..., Api]) -> None:
    api = api_factory(event_keys=["k1", "k2"])
    assert post(api, {"name": "a/b"}, key="k2").status_code == 200
    response = post(api, {"name": "a/b"}, key="nope")
    assert response.status_code == 401
    assert response.get_json()["code"] == "unauthorized"
    assert len(api.sender.job_ids("stepline.event")) == 1


def test_missing_key(api: Api) -> None:
    for path in ("/e/", "/e"):
        response = api.client.post(path, json={"name": "a/b"})
        assert response.status_code == 401
        assert response.get_json()["error"] == "Event key is required"


# --- dedupe ---------------------------------------------------------------------------------


def test_same_id_within_24h_is_processed_once(api: Api) -> None:
    api.register(fn("f", Trigger(event="a/b")))
    [first] = post(api, {"name": "a/b", "id": "order-1", "data": {"n": 1}}).get_json()["ids"]
    [again] = post(api, {"name": "a/b", "id": "order-1", "data": {"n": 2}}).get_json()["ids"]
    assert again == first
    assert api.sender.job_ids("stepline.event") == [f"event:{first}"]
    api.process_events()
    assert len(api.engine.store.event_run_ids(first)) == 1


def test_duplicate_ids_within_one_batch(api: Api) -> None:
    ids = post(
        api, [{"name": "a/b", "id": "x"}, {"name": "a/c", "id": "x"}, {"name": "a/d"}]
    ).get_json()["ids"]
    assert ids[0] == ids[1] != ids[2]
    # One job for the request, processing its two new events.
    [job_id] = api.sender.job_ids("stepline.event")
    job = api.engine.store.begin_job(job_id, "t", api.engine.now(), 1000)
    assert not isinstance(job, str) and job.events == [ids[0], ids[2]]


def test_event_id_seed_header_makes_retries_dedupe(api: Api) -> None:
    seed = "1700000000000,AAECAwQFBgcICQ=="
    headers = {"x-inngest-event-id-seed": seed}
    first = post(api, [{"name": "a/b"}, {"name": "a/c"}], headers=headers).get_json()["ids"]
    again = post(api, [{"name": "a/b"}, {"name": "a/c"}], headers=headers).get_json()["ids"]
    assert first == again == seeded_ids(seed, 2)
    assert (
        len(api.sender.job_ids("stepline.event")) == 1
    )  # one job for the request; the retry made none


def test_concurrent_requests_each_get_their_ids_and_every_event_one_run(api: Api) -> None:
    """Requests from many threads may share a group commit (app.api.group_commit): each
    still answers its own ids, a user id sent twice dedupes across requests, and every new
    event is in exactly one sent job and starts exactly one run."""
    api.register(fn("f", Trigger(event="a/b")))
    answers: dict[int, list[str]] = {}

    def send(n: int) -> None:
        client = api.app.test_client()
        body = [{"name": "a/b", "id": f"shared-{n % 4}"}, {"name": "a/b", "data": {"n": n}}]
        reply = client.post("/e/k", data=json.dumps(body), content_type="application/json")
        assert reply.status_code == 200
        answers[n] = reply.get_json()["ids"]

    threads = [threading.Thread(target=send, args=(n,)) for n in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(answers) == list(range(24))
    shared = {n % 4: ids[0] for n, ids in answers.items()}
    assert all(answers[n][0] == shared[n % 4] for n in answers)
    own = [ids[1] for ids in answers.values()]
    new_ids = {*shared.values(), *own}
    assert len(new_ids) == 4 + 24
    jobs = api.sender.job_ids("stepline.event")
    queued = [event_id for job_id in jobs for event_id in _job_events(api, job_id)]
    assert sorted(queued) == sorted(new_ids)
    assert api.process_events() == len(jobs)
    assert all(len(api.engine.store.event_run_ids(event_id)) == 1 for event_id in new_ids)


def _job_events(api: Api, job_id: str) -> list[str]:
    """The events of a queued job (its record in the jobs hash, read without leasing it)."""
    raw = api.engine.store._client.hget(api.engine.store._keys.jobs, job_id)
    assert raw is not None
    events = json.loads(raw)["event_ids"]
    assert isinstance(events, list)
    return [str(event_id) for event_id in events]


def test_bad_seed_header_is_ignored(api: Api) -> None:
    headers = {"x-inngest-event-id-seed": "nonsense"}
    assert post(api, {"name": "a/b"}, headers=headers).status_code == 200


# --- what events trigger --------------------------------------------------------------------


def _runs_by_function(api: Api, event_id: str) -> list[str]:
    views = [api.engine.store.get_run(r) for r in api.engine.store.event_run_ids(event_id)]
    return sorted(v.function_id for v in views if v is not None)


def test_wildcard_triggers_and_expressions(api: Api) -> None:
    api.register(
        fn("all-users", Trigger(event="app/user.*")),
        fn("all-app", Trigger(event="app/*")),
        fn("created", Trigger(event="app/user.created")),
        fn("vip", Trigger(event="app/user.*", expression="event.data.plan == 'vip'")),
        fn("deleted", Trigger(event="app/user.deleted")),
    )
    ids = post(
        api,
        [
            {"name": "app/user.created", "data": {"plan": "vip"}},
            {"name": "app/user.created", "data": {"plan": "free"}},
            {"name": "app/order.created"},
        ],
    ).get_json()["ids"]
    assert api.process_events() == 1  # one job for the request's three events
    assert _runs_by_function(api, ids[0]) == [
        "app-all-app",
        "app-all-users",
        "app-created",
        "app-vip",
    ]
    assert _runs_by_function(api, ids[1]) == ["app-all-app", "app-all-users", "app-created"]
    assert _runs_by_function(api, ids[2]) == ["app-all-app"]
    assert len(api.sender.job_ids("stepline.start")) == 8


def test_event_resumes_a_waiting_run(api: Api) -> None:
    waiter = fn("waiter", Trigger(event="shop/order.created"))
    api.register(waiter)
    [trigger_id] = post(
        api, {"name": "shop/order.created", "data": {"order_id": "o-9"}}
    ).get_json()["ids"]
    api.process_events()
    [run_id] = api.engine.store.event_run_ids(trigger_id)
    state = api.engine.store.load_run(run_id)
    assert state is not None
    trigger: dict[str, JSON] = state.events[0]
    prepared = prepare_pause("event.data.order_id == async.data.order_id", trigger)
    now = api.engine.now()
    api.engine.store.save_pause(
        Pause(
            id="pause-1",
            run_id=run_id,
            step="wait-hash",
            step_name="wait",
            kind="WaitForEvent",
            event="shop/order.paid",
            expression=prepared.expression,
            index_path=prepared.index_path,
            index_value=prepared.index_value,
            trigger_event=trigger,
            trigger_event_id=trigger_id,
            expires_at=now + 60_000,
            created_at=now,
        )
    )
    post(api, {"name": "shop/order.paid", "data": {"order_id": "o-1"}})
    api.process_events()
    assert api.engine.store.get_pause("pause-1") is not None
    [paid_id] = post(api, {"name": "shop/order.paid", "data": {"order_id": "o-9"}}).get_json()[
        "ids"
    ]
    api.process_events()
    assert api.engine.store.get_pause("pause-1") is None
    state = api.engine.store.load_run(run_id)
    assert state is not None
    memo = state.steps["wait-hash"]
    assert isinstance(memo, dict) and memo["id"] == paid_id
    assert memo["data"] == {"order_id": "o-9"}
    assert f"{run_id}:resume:wait-hash" in api.sender.job_ids("stepline.edge")
