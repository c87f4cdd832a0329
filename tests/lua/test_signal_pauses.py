"""Signal waits (lua/save_pause.lua with a correlation mode) and the recent-events index used
by wait lookback (`Store.index_recent_event`)."""

from __future__ import annotations

import redis

from app.models import Pause
from app.state.events import RECENT_EVENTS_MAX, RECENT_EVENTS_MS
from app.state.store import Store
from tests.lua.conftest import T0, make_pause, new_run, race


def signal_pause(pause_id: str, run_id: str = "01RUN", name: str = "sig") -> Pause:
    return make_pause(
        pause_id, run_id, kind="WaitForSignal", event="", correlation_id=f"signal:{name}"
    )


def test_a_signal_name_is_held_by_one_pending_wait(store: Store, run: str) -> None:
    store.create_run(new_run("02RUN"))
    first, second = signal_pause("p1"), signal_pause("p2", "02RUN")
    assert store.save_signal_pause(first, replace=False) == "created"
    assert store.save_signal_pause(first, replace=False) == "exists"  # a replay: harmless
    assert store.save_signal_pause(second, replace=False) == "conflict"
    assert store.get_pause("p2") is None  # nothing written
    assert store.pause_by_correlation("signal:sig") == first


def test_replace_takes_the_name_and_leaves_the_old_wait_pending(
    store: Store, run: str, client: redis.Redis
) -> None:
    store.create_run(new_run("02RUN"))
    first, second = signal_pause("p1"), signal_pause("p2", "02RUN")
    store.save_signal_pause(first, replace=False)
    assert store.save_signal_pause(second, replace=True) == "created"
    assert store.pause_by_correlation("signal:sig") == second
    assert store.get_pause("p1") == first  # still pending until its timeout
    store.delete_pause("p1")  # the old wait timing out does not free the name
    assert store.pause_by_correlation("signal:sig") == second
    assert client.zscore("sl:pauses:expiry", "p2") is not None


def test_a_consumed_wait_frees_the_name(store: Store, run: str) -> None:
    store.create_run(new_run("02RUN"))
    store.save_signal_pause(signal_pause("p1"), replace=False)
    assert store.consume_pause("p1", {"data": {"signal": "sig", "data": 1}}, T0).won
    assert store.pause_by_correlation("signal:sig") is None
    assert store.save_signal_pause(signal_pause("p2", "02RUN"), replace=False) == "created"


def test_concurrent_waits_on_one_name_leave_exactly_one_holder(store: Store) -> None:
    for i in range(8):
        store.create_run(new_run(f"0{i}RUN"))
    outcomes = race(8, lambda i: store.save_signal_pause(signal_pause(f"p{i}", f"0{i}RUN"), False))
    assert sorted(outcomes).count("created") == 1
    assert sorted(outcomes).count("conflict") == 7


def test_recent_events_index_is_bounded_by_time_and_count(
    store: Store, client: redis.Redis
) -> None:
    for i in range(3):
        store.store_event({"name": "a/b", "data": {"i": i}}, f"E{i}", T0 + i, 60_000)
        store.index_recent_event("a/b", f"E{i}", T0 + i)
    store.index_recent_event("a/b", "E1", T0 + 1)  # a repeat changes nothing
    found = store.recent_events("a/b", T0 + 1, T0 + 5)
    assert [r.internal_id for r in found] == ["E1", "E2"]  # oldest first, within the window
    assert store.recent_events("other/name", T0, T0 + 5) == []
    late = T0 + RECENT_EVENTS_MS + 10
    store.index_recent_event("a/b", "E9", late)  # entries older than 24 h are dropped
    assert client.zrange("sl:recent-events:a/b", 0, -1) == ["E9"]
    pipe = client.pipeline()
    for i in range(RECENT_EVENTS_MAX + 5):
        pipe.zadd("sl:recent-events:a/b", {f"F{i}": late + i})
    pipe.execute()
    store.index_recent_event("a/b", "G", late + RECENT_EVENTS_MAX + 10)
    assert client.zcard("sl:recent-events:a/b") == RECENT_EVENTS_MAX
