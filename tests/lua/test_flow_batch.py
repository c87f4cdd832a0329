"""lua/flow_batch_append.lua and flow_batch_start.lua: batches close when full or timed out."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from app.state.flow import BATCH_SEEN_TTL_MS, FlowStore, flow_item_id
from app.state.store import Store
from tests.lua.conftest import T0, race

TIMEOUT = 5_000


@pytest.fixture
def flow(store: Store) -> Iterator[FlowStore]:
    yield FlowStore(store)


def append(
    flow: FlowStore, n: int, now: int = T0, *, size: int = 3, key: str = "-", max_bytes: int = 10**7
) -> str:
    result = flow.append_batch(
        "app-fn",
        key,
        f"e{n}",
        {"name": "app/x", "data": {"n": n}},
        now,
        max_size=size,
        max_bytes=max_bytes,
        timeout_ms=TIMEOUT,
        new_id=f"B{n}",
        full_send_by=now + 100,
    )
    return f"{result.code}:{result.batch_id}:{result.size}"


def due(client: redis.Redis) -> dict[str, float]:
    return {job: score for job, score in client.zrange("sl:jobs:due", 0, -1, withscores=True)}


def test_first_event_opens_a_batch_with_a_timer(flow: FlowStore, client: redis.Redis) -> None:
    assert append(flow, 1) == "appended:B1:1"
    assert client.get("sl:flow:batch:app-fn:-") == "B1"
    assert due(client) == {"batch:B1": T0 + TIMEOUT}
    assert client.hget("sl:flow:batch-meta:B1", "status") == "pending"
    assert flow_item_id("batch:B1:full") == "B1"


def test_full_batch_closes_and_queues_its_full_job(flow: FlowStore, client: redis.Redis) -> None:
    assert [append(flow, n) for n in (1, 2, 3)] == ["appended:B1:1", "appended:B1:2", "full:B1:3"]
    assert client.exists("sl:flow:batch:app-fn:-") == 0
    assert client.hget("sl:flow:batch-meta:B1", "status") == "started"
    assert due(client) == {"batch:B1": T0 + TIMEOUT, "batch:B1:full": T0 + 100}
    assert append(flow, 4) == "appended:B4:1"  # the next event opens the next batch


def test_full_by_bytes(flow: FlowStore) -> None:
    assert append(flow, 1, size=100, max_bytes=80) == "appended:B1:1"
    assert append(flow, 2, size=100, max_bytes=80) == "full:B1:2"


def test_duplicate_event_is_not_appended_twice(flow: FlowStore, client: redis.Redis) -> None:
    append(flow, 1)
    result = flow.append_batch(
        "app-fn",
        "-",
        "e1",
        {"name": "app/x"},
        T0,
        max_size=3,
        max_bytes=10**7,
        timeout_ms=TIMEOUT,
        new_id="other",
        full_send_by=T0,
    )
    assert (result.code, result.batch_id) == ("duplicate", "B1")
    assert client.llen("sl:flow:batch-events:B1") == 1
    assert 0 < client.pttl("sl:flow:batch-seen:app-fn:e1") <= BATCH_SEEN_TTL_MS


def test_start_returns_the_events_in_order_and_rotates_the_pointer(
    flow: FlowStore, client: redis.Redis
) -> None:
    append(flow, 1)
    append(flow, 2)
    started = flow.start_batch("B1")
    assert started is not None
    assert started.function_id == "app-fn"
    assert started.event_ids == ["e1", "e2"]
    assert [e["data"] for e in started.events] == [{"n": 1}, {"n": 2}]
    assert client.exists("sl:flow:batch:app-fn:-") == 0
    assert append(flow, 3) == "appended:B3:1"


def test_start_twice_gives_the_same_events_until_dropped(flow: FlowStore) -> None:
    append(flow, 1)
    first, second = flow.start_batch("B1"), flow.start_batch("B1")
    assert first == second
    flow.drop_batch("B1")
    assert flow.start_batch("B1") is None


def test_start_of_a_full_batch_leaves_the_next_batch_alone(
    flow: FlowStore, client: redis.Redis
) -> None:
    for n in (1, 2, 3):
        append(flow, n)
    append(flow, 4)  # opens B4
    started = flow.start_batch("B1")
    assert started is not None and started.event_ids == ["e1", "e2", "e3"]
    assert client.get("sl:flow:batch:app-fn:-") == "B4"


def test_keys_batch_separately(flow: FlowStore) -> None:
    assert append(flow, 1, key="a") == "appended:B1:1"
    assert append(flow, 2, key="b") == "appended:B2:1"


def test_racing_appends_fill_batches_exactly(flow: FlowStore, client: redis.Redis) -> None:
    results = race(10, lambda i: append(flow, i, size=3))
    sizes: dict[str, int] = {}
    for result in results:
        _, batch_id, _ = result.split(":")
        sizes[batch_id] = sizes.get(batch_id, 0) + 1
    assert sorted(sizes.values()) == [1, 3, 3, 3]
    assert sum(1 for r in results if r.startswith("full")) == 3
    for batch_id, size in sizes.items():
        assert client.llen(f"sl:flow:batch-events:{batch_id}") == size
