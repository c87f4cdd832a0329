"""lua/delete_pause.lua: a pause and every index entry go together."""

from __future__ import annotations

import redis

from app.state.store import Store
from tests.lua.conftest import make_pause


def test_deletes_the_pause_and_its_indexes(store: Store, run: str, client: redis.Redis) -> None:
    store.save_pause(
        make_pause("p1", index_path="async.data.id", index_value="1", correlation_id="c1")
    )
    store.save_pause(make_pause("p2", index_path="async.data.id", index_value="2"))
    store.save_pause(make_pause("p3"))

    store.delete_pause("p1")
    assert store.get_pause("p1") is None
    assert store.pause_by_correlation("c1") is None
    assert client.hget("sl:pidx-paths:app/paid", "async.data.id") == "1"
    assert client.exists("sl:pidx:app/paid:async.data.id:1") == 0
    assert client.smembers("sl:{01RUN}:pauses") == {"p2", "p3"}
    assert store.count_pauses() == 2

    store.delete_pause("p2")
    store.delete_pause("p3")
    assert store.pause_index_paths("app/paid") == []
    assert client.keys("sl:p*") == []  # no pause, index, paths, scan or correlation key left
    assert client.exists("sl:{01RUN}:pauses") == 0

    # Deleting again is harmless.
    store.delete_pause("p1")
    store.delete_pause("never")
    assert store.count_pauses() == 0


def test_keeps_a_correlation_id_owned_by_another_pause(store: Store, run: str) -> None:
    store.save_pause(make_pause("p1", correlation_id="c"))
    store.save_pause(make_pause("p2", correlation_id="c"))
    store.delete_pause("p2")
    found = store.pause_by_correlation("c")
    assert found is not None and found.id == "p1"


def test_expired_pauses_are_listed_for_gc(store: Store, run: str) -> None:
    store.save_pause(make_pause("old", expires_at=100))
    store.save_pause(make_pause("new", expires_at=200))
    assert store.expired_pauses(before=150) == ["old"]
    assert store.expired_pauses(before=201) == ["old", "new"]
    assert store.expired_pauses(before=100) == []
