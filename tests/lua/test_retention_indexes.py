"""The run indexes the listing reads: create_run, mark_started and finish_run keep the
per-status and per-function-and-status zsets and the ended index exact, atomically."""

from __future__ import annotations

import redis

from app.state.records import RunCriteria
from app.state.store import Store
from tests.lua.conftest import T0, new_run


def _members(client: redis.Redis, key: str) -> dict[str, float]:
    return dict(client.zrange(key, 0, -1, withscores=True))


def test_a_run_moves_through_the_status_indexes(store: Store, client: redis.Redis) -> None:
    store.create_run(new_run("01A", created_at=T0))
    assert _members(client, "sl:runs:st:Queued") == {"01A": T0}
    assert _members(client, "sl:runs:st:Queued:fn:app-fn") == {"01A": T0}
    assert client.hget("sl:metric:runs_queued_total", "app-fn") == "1"

    store.mark_started("01A", T0 + 5)
    store.mark_started("01A", T0 + 6)  # twice is harmless
    assert _members(client, "sl:runs:st:Queued") == {}
    assert _members(client, "sl:runs:st:Running:fn:app-fn") == {"01A": T0}
    assert client.hget("sl:metric:runs_started_total", "app-fn") == "1"

    assert store.finish_run("01A", "Failed", None, {"m": 1}, T0 + 9) is True
    assert store.finish_run("01A", "Completed", None, None, T0 + 10) is False
    assert _members(client, "sl:runs:st:Running") == {}
    assert _members(client, "sl:runs:st:Failed") == {"01A": T0}
    assert _members(client, "sl:runs:st:Failed:fn:app-fn") == {"01A": T0}
    assert _members(client, "sl:runs:st:Completed") == {}
    assert _members(client, "sl:runs:ended") == {"01A": T0 + 9}
    assert client.hget("sl:metric:runs_failed_total", "app-fn") == "1"
    assert client.hget("sl:metric:runs_completed_total", "app-fn") is None


def test_a_queued_run_can_be_cancelled_straight_away(store: Store, client: redis.Redis) -> None:
    store.create_run(new_run("01A"))
    store.finish_run("01A", "Cancelled", None, None, T0 + 1)
    assert _members(client, "sl:runs:st:Queued") == {}
    assert _members(client, "sl:runs:st:Cancelled") == {"01A": T0}


def test_a_second_create_changes_no_index(store: Store, client: redis.Redis) -> None:
    store.create_run(new_run("01A"))
    store.mark_started("01A", T0)
    assert store.create_run(new_run("01A")) == ("01A", False)
    assert _members(client, "sl:runs:st:Queued") == {}
    assert client.hget("sl:metric:runs_queued_total", "app-fn") == "1"


def test_mark_started_of_a_missing_run_is_harmless(store: Store, client: redis.Redis) -> None:
    store.mark_started("nope", T0)
    assert client.keys("sl:runs:st:*") == []


def test_page_runs_reads_the_right_index(store: Store) -> None:
    for i in range(5):
        store.create_run(new_run(f"01R{i}", created_at=T0 + i))
    store.create_run(new_run("01X", function_id="other", created_at=T0 + 2))
    store.mark_started("01R1", T0 + 10)
    page = store.page_runs(2, RunCriteria("app-fn", "Queued"))
    assert [view.run_id for view in page.items] == ["01R4", "01R3"]
    assert page.next == (T0 + 3, "01R3")
    rest = store.page_runs(10, RunCriteria("app-fn", "Queued"), after=page.next)
    assert [view.run_id for view in rest.items] == ["01R2", "01R0"] and rest.next is None
    window = store.page_runs(10, RunCriteria(created_after=T0 + 2, created_before=T0 + 4))
    assert [view.run_id for view in window.items] == ["01R3", "01X", "01R2"]
