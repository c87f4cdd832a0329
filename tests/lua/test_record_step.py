"""lua/record_step.lua: history without memo."""

from __future__ import annotations

import redis

from app.state.store import Store
from tests.lua.conftest import T0


def test_merges_fields_and_keeps_order(store: Store, run: str) -> None:
    store.record_step(run, "a", {"name": "A", "attempts": 0, "due": T0})
    store.record_step(run, "a", {"name": "A", "attempts": 1, "error": {"message": "boom"}})
    store.record_step(run, "a", {"name": "A", "attempts": 1, "error": {"message": "boom"}})
    store.record_step(run, "b", {})

    view = store.get_run(run)
    assert view is not None
    assert view.steps == [
        {
            "id": "a",
            "name": "A",
            "attempts": 1,
            "due": T0,
            "error": {"message": "boom"},
            "order": 0,
        },
        {"id": "b", "order": 1},
    ]
    state = store.load_run(run)
    assert state is not None and state.stack == [] and state.steps == {}


def test_missing_run_is_left_alone(store: Store, client: redis.Redis) -> None:
    store.record_step("nope", "a", {"name": "A"})
    assert client.exists("sl:{nope}:history") == 0


def test_after_finish_history_is_still_recorded(store: Store, run: str) -> None:
    store.finish_run(run, "Failed", None, {"message": "x"}, T0)
    store.record_step(run, "a", {"name": "A", "error": {"message": "x"}})
    view = store.get_run(run)
    assert view is not None and view.steps[0]["error"] == {"message": "x"}
