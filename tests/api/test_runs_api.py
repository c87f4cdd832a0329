"""The runs API (`/v1/runs`, `/v1/events`), health, and JSON errors for every failure."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from app.api import create_app
from app.models import RunStatus, Trigger
from tests.api.conftest import Api, fn


def _start_run(api: Api, function: str = "f") -> tuple[str, str]:
    api.register(fn(function, Trigger(event="a/b")))
    response = api.client.post(
        "/e/k", data=json.dumps({"name": "a/b", "data": {"x": 1}}), content_type="application/json"
    )
    [event_id] = response.get_json()["ids"]
    api.process_events()
    [run_id] = api.engine.store.event_run_ids(event_id)
    return event_id, run_id


# --- runs -----------------------------------------------------------------------------------


def test_get_run(api: Api) -> None:
    event_id, run_id = _start_run(api)
    response = api.client.get(f"/v1/runs/{run_id}")
    assert response.status_code == 200
    run = response.get_json()["data"]
    assert run["run_id"] == run_id
    assert run["function_id"] == "app-f"
    assert run["status"] == "Queued"
    assert run["event_id"] == event_id and run["event_ids"] == [event_id]
    assert run["created_at"].endswith("Z") and "T" in run["created_at"]
    assert run["run_started_at"] is None and run["ended_at"] is None
    assert run["output"] is None and "error" not in run
    assert run["steps"] == []


def test_get_run_with_steps_and_output(api: Api) -> None:
    _, run_id = _start_run(api)
    store = api.engine.store
    now = api.engine.now()
    store.mark_started(run_id, now)
    store.save_step(
        run_id,
        "h1",
        {"data": 42},
        {
            "name": "compute",
            "kind": "StepRun",
            "status": "Completed",
            "attempts": 1,
            "started_at": now,
            "ended_at": now + 5,
        },
        now,
    )
    store.record_step(
        run_id,
        "h2",
        {
            "name": "flaky",
            "kind": "StepRun",
            "status": "Retrying",
            "attempts": 2,
            "error": {"message": "boom"},
        },
    )
    store.finish_run(run_id, RunStatus.COMPLETED.value, {"ok": True}, None, now + 10)
    run = api.client.get(f"/v1/runs/{run_id}").get_json()["data"]
    assert run["status"] == "Completed"
    assert run["output"] == {"ok": True}
    assert run["run_started_at"] is not None and run["ended_at"] is not None
    steps = {step["name"]: step for step in run["steps"]}
    assert steps["compute"]["id"] == "h1"
    assert steps["compute"]["kind"] == "StepRun"
    assert steps["compute"]["status"] == "Completed"
    assert steps["compute"]["attempts"] == 1
    assert steps["compute"]["started_at"].endswith("Z")
    assert steps["flaky"]["error"] == {"message": "boom"}
    assert steps["flaky"]["ended_at"] is None


def test_failed_run_shows_error(api: Api) -> None:
    _, run_id = _start_run(api)
    error = {"name": "Error", "message": "nope"}
    api.engine.store.finish_run(run_id, "Failed", None, error, api.engine.now())
    run = api.client.get(f"/v1/runs/{run_id}").get_json()["data"]
    assert run["status"] == "Failed" and run["error"] == error and "output" not in run


def test_unknown_run_is_404_json(api: Api) -> None:
    response = api.client.get("/v1/runs/01NOSUCHRUN")
    assert response.status_code == 404
    assert response.get_json()["code"] == "not_found"


# --- events ---------------------------------------------------------------------------------


def test_get_event_and_its_runs(api: Api) -> None:
    event_id, run_id = _start_run(api)
    api.register(fn("g", Trigger(event="a/*")), app_id="other")
    event = api.client.get(f"/v1/events/{event_id}").get_json()["data"]
    assert event["internal_id"] == event_id
    assert event["name"] == "a/b" and event["data"] == {"x": 1}
    assert event["received_at"].endswith("Z")
    runs = api.client.get(f"/v1/events/{event_id}/runs").get_json()["data"]
    assert [run["run_id"] for run in runs] == [run_id]
    assert runs[0]["function_id"] == "app-f"


def test_unknown_event_is_404(api: Api) -> None:
    assert api.client.get("/v1/events/nope").status_code == 404
    response = api.client.get("/v1/events/nope/runs")
    assert response.status_code == 404
    assert response.get_json()["code"] == "not_found"


# --- cancel ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["delete", "post"])
def test_cancel_run(api: Api, method: str) -> None:
    _, run_id = _start_run(api)
    if method == "delete":
        response = api.client.delete(f"/v1/runs/{run_id}")
    else:
        response = api.client.post(f"/v1/runs/{run_id}/cancel")
    assert response.status_code == 200
    assert response.get_json() == {"data": {"run_id": run_id, "status": "Cancelled"}}
    assert api.client.get(f"/v1/runs/{run_id}").get_json()["data"]["status"] == "Cancelled"
    again = api.client.delete(f"/v1/runs/{run_id}")
    assert again.status_code == 409
    assert again.get_json()["code"] == "conflict"


def test_cancel_ended_run_is_409(api: Api) -> None:
    _, run_id = _start_run(api)
    api.engine.store.finish_run(run_id, "Completed", 1, None, api.engine.now())
    response = api.client.post(f"/v1/runs/{run_id}/cancel")
    assert response.status_code == 409
    assert api.client.get(f"/v1/runs/{run_id}").get_json()["data"]["status"] == "Completed"


def test_cancel_unknown_run_is_404(api: Api) -> None:
    assert api.client.delete("/v1/runs/01NOSUCHRUN").status_code == 404


# --- health and generic errors --------------------------------------------------------------


def test_health(api: Api) -> None:
    response = api.client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["redis"] is True and body["status"] == 200
    # No worker and no beat ever reported here (tests/api/test_health.py covers liveness).
    assert body["ok"] is False and body["workers"]["known"] == 0


def test_health_when_redis_is_down(api_factory: Callable[..., Api]) -> None:
    down = api_factory(redis_url="redis://127.0.0.1:1/0")
    response = down.client.get("/health")
    assert response.status_code == 503
    body = response.get_json()
    assert body["redis"] is False and body["status"] == 503


def test_unknown_route_and_wrong_method_are_json(api: Api) -> None:
    missing = api.client.get("/nope")
    assert missing.status_code == 404
    assert missing.get_json()["code"] == "not_found"
    wrong = api.client.get("/e/key")
    assert wrong.status_code == 405
    assert wrong.get_json()["code"] == "method_not_allowed"


def test_unexpected_errors_are_json_500(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(run_id: str) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(api.engine.store, "get_run", broken)
    api.app.testing = False  # let the handler answer instead of re-raising
    response = api.client.get("/v1/runs/x")
    assert response.status_code == 500
    assert response.get_json() == {
        "error": "internal server error",
        "code": "internal_error",
        "status": 500,
    }


def test_engine_is_built_from_the_environment_on_first_use(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("STEPLINE_KEY_PREFIX", "apienv")
    monkeypatch.delenv("STEPLINE_FUNCTIONS", raising=False)
    app = create_app()
    response = app.test_client().get("/health")
    assert response.status_code == 200
