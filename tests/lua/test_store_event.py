"""lua/store_event.lua: events stored once, deduplicated by the user's id."""

from __future__ import annotations

import redis

from app.state.store import EventRecord, Store
from tests.lua.conftest import T0, race


def event(user_id: str = "", n: int = 0) -> dict[str, object]:
    return {"name": "app/go", "data": {"n": n, "l": []}, "id": user_id, "ts": T0, "user": {}}


def test_stores_and_reads_back(store: Store, client: redis.Redis) -> None:
    assert store.store_event(event(), "01E1", T0, 1000) == ("01E1", True)
    assert store.get_event("01E1") == EventRecord("01E1", T0, event())
    assert store.get_event("nope") is None
    # The same internal id again stores nothing.
    assert store.store_event(event(n=2), "01E1", T0 + 1, 1000) == ("01E1", False)
    assert store.get_event("01E1") == EventRecord("01E1", T0, event())
    assert client.zcard("sl:events") == 1


def test_dedupes_by_user_id_within_the_ttl(store: Store, client: redis.Redis) -> None:
    assert store.store_event(event("u1"), "01E1", T0, 5000) == ("01E1", True)
    assert store.store_event(event("u1", 2), "01E2", T0 + 1, 5000) == ("01E1", False)
    assert store.get_event("01E2") is None
    assert 0 < client.pttl("sl:event-dedupe:u1") <= 5000
    # Events without an id are never deduplicated.
    assert store.store_event(event(), "01E3", T0, 5000) == ("01E3", True)
    assert store.store_event(event(), "01E4", T0, 5000) == ("01E4", True)


def test_exactly_one_of_eight_racers_stores(store: Store) -> None:
    results = race(8, lambda i: store.store_event(event("u1", i), f"01E{i}", T0, 5000))
    stored = [r for r in results if r[1]]
    assert len(stored) == 1
    assert all(r == (stored[0][0], False) for r in results if not r[1])


def test_list_events_newest_first_with_a_cursor(store: Store) -> None:
    for i in range(5):
        store.store_event(event(n=i), f"01E{i}", T0 + i, 1000)
    assert [e.internal_id for e in store.list_events(10)] == [f"01E{i}" for i in range(4, -1, -1)]
    assert [e.internal_id for e in store.list_events(2, before="01E3")] == ["01E2", "01E1"]
    assert store.list_events(2, before="01E0") == []
    assert store.list_events(2, before="nope") == []
