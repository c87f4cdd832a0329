"""`POST /invoke/<function_id>`: one run of a function, whatever its triggers."""

from __future__ import annotations

from app.models import Trigger
from tests.api.conftest import Api, fn


def test_invoke_starts_a_run_of_a_cron_only_function(api: Api) -> None:
    api.register(fn("nightly", Trigger(cron="0 3 * * *")))
    answer = api.client.post("/invoke/app-nightly", json={"data": {"dry_run": True}})
    assert answer.status_code == 200
    event_id = answer.get_json()["id"]
    api.process_events()
    [run_id] = api.engine.store.event_run_ids(event_id)
    state = api.engine.store.load_run(run_id)
    assert state is not None and state.function_id == "app-nightly"
    assert state.events[0]["name"] == "inngest/function.invoked"
    assert state.events[0]["data"]["dry_run"] is True


def test_invoke_refuses_unknown_functions_and_bad_bodies(api: Api) -> None:
    api.register(fn("nightly", Trigger(cron="0 3 * * *")))
    missing = api.client.post("/invoke/app-nope", json={})
    assert missing.status_code == 404 and missing.get_json()["field"] == "function_id"
    bad = api.client.post("/invoke/app-nightly", data="{nope", content_type="application/json")
    assert bad.status_code == 400 and bad.get_json()["field"] == "body"
    wrong = api.client.post("/invoke/app-nightly", json={"data": [1]})
    assert wrong.status_code == 400 and wrong.get_json()["field"] == "data"
