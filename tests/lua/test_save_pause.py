"""lua/save_pause.lua: insert if absent, index by event, path/value and correlation id."""

from __future__ import annotations

import redis

from app.state.store import Store
from tests.lua.conftest import T0, make_pause


def test_inserts_once_and_indexes(store: Store, run: str, client: redis.Redis) -> None:
    pause = make_pause(
        "p1",
        index_path="async.data.id",
        index_value="7",
        correlation_id="c1",
        expression="async.data.id == '7'",
    )
    assert store.save_pause(pause) is True
    assert store.save_pause(pause) is False
    assert store.save_pause(pause.model_copy(update={"created_at": T0 + 1})) is False

    assert store.get_pause("p1") == pause
    assert store.pause_by_correlation("c1") == pause
    assert store.pause_index_paths("app/paid") == ["async.data.id"]
    assert client.hget("sl:pidx-paths:app/paid", "async.data.id") == "1"
    assert client.smembers("sl:pidx:app/paid:async.data.id:7") == {"p1"}
    assert client.exists("sl:pscan:app/paid") == 0
    assert client.smembers("sl:{01RUN}:pauses") == {"p1"}
    assert client.zscore("sl:pauses:expiry", "p1") == T0 + 60_000
    assert store.count_pauses() == 1


def test_unindexed_pauses_go_to_the_scan_set(store: Store, run: str, client: redis.Redis) -> None:
    store.save_pause(make_pause("p1"))
    store.save_pause(make_pause("p2", index_path="async.data.id"))  # no value: unindexed
    assert client.smembers("sl:pscan:app/paid") == {"p1", "p2"}
    assert store.pause_index_paths("app/paid") == []


def test_a_pause_without_event_name_is_not_indexed_by_event(
    store: Store, run: str, client: redis.Redis
) -> None:
    store.save_pause(make_pause("p1", event="", kind="InvokeFunction", correlation_id="c"))
    assert client.keys("sl:pscan:*") == [] and client.keys("sl:pidx*") == []
    assert store.pause_by_correlation("c") == store.get_pause("p1")


def test_index_path_counts(store: Store, run: str, client: redis.Redis) -> None:
    for i in range(3):
        store.save_pause(make_pause(f"p{i}", index_path="async.data.id", index_value=str(i)))
    store.save_pause(make_pause("q", index_path="async.data.user", index_value="u"))
    assert client.hgetall("sl:pidx-paths:app/paid") == {
        "async.data.id": "3",
        "async.data.user": "1",
    }
    assert store.pause_index_paths("app/paid") == ["async.data.id", "async.data.user"]


def test_first_pause_keeps_a_correlation_id(store: Store, run: str) -> None:
    store.save_pause(make_pause("p1", correlation_id="c"))
    store.save_pause(make_pause("p2", correlation_id="c"))
    found = store.pause_by_correlation("c")
    assert found is not None and found.id == "p1"
    assert store.pause_by_correlation("other") is None


def test_refused_for_an_ended_or_missing_run(store: Store, run: str) -> None:
    assert store.save_pause(make_pause("p1", run_id="nope")) is False
    store.finish_run(run, "Completed", None, None, T0)
    assert store.save_pause(make_pause("p2")) is False
    assert store.count_pauses() == 0


def test_find_pauses_uses_the_index(store: Store, run: str) -> None:
    for i in range(10_000):
        pause = make_pause(f"p{i:05}", index_path="async.data.order", index_value=str(i))
        assert store.save_pause(pause)
    store.save_pause(make_pause("scan1"))
    store.save_pause(make_pause("other", event="app/other"))
    assert store.count_pauses() == 10_002

    found = store.find_pauses("app/paid", [("async.data.order", "4242")])
    assert sorted(p.id for p in found) == ["p04242", "scan1"]
    found = store.find_pauses("app/paid", [("async.data.order", "nope")])
    assert [p.id for p in found] == ["scan1"]
    assert [p.id for p in store.find_pauses("app/paid", [])] == ["scan1"]
    assert [p.id for p in store.find_pauses("app/other", [])] == ["other"]
    assert store.find_pauses("app/none", [("async.data.order", "1")]) == []
    lookups = [("async.data.order", "1"), ("async.data.order", "2")]
    assert [p.id for p in store.find_pauses("app/paid", lookups, limit=2)] == ["p00001", "p00002"]
