"""lua/flow_rate_limit.lua: Inngest's GCRA, counted once per schedule, `now` a parameter."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from app.state.flow import RATE_LIMIT_SEEN_TTL_MS, FlowStore
from app.state.store import Store
from tests.lua.conftest import T0, race

MINUTE = 60_000


@pytest.fixture
def flow(store: Store) -> Iterator[FlowStore]:
    yield FlowStore(store)


def check(flow: FlowStore, event: str, now: int, limit: int = 2, burst: int = 0) -> bool:
    result = flow.rate_limit("app-fn", "-", event, now, period_ms=MINUTE, limit=limit, burst=burst)
    return result.admitted


def test_one_per_emission_interval_without_burst(flow: FlowStore) -> None:
    # limit 2 per minute, burst floor(2/10) = 0: one now, the next 30 s later.
    assert check(flow, "e1", T0)
    assert not check(flow, "e2", T0 + 1)
    assert not check(flow, "e3", T0 + 29_999)
    assert check(flow, "e4", T0 + 30_000)
    assert not check(flow, "e5", T0 + 30_001)


def test_burst_admits_back_to_back(flow: FlowStore) -> None:
    # limit 10 per minute, burst 1: two at once, then one every 6 s.
    admitted = [check(flow, f"e{i}", T0, limit=10, burst=1) for i in range(5)]
    assert admitted == [True, True, False, False, False]
    assert check(flow, "late", T0 + 6_000, limit=10, burst=1)


def test_limited_answer_says_when_to_retry(flow: FlowStore) -> None:
    check(flow, "e1", T0)
    result = flow.rate_limit("app-fn", "-", "e2", T0 + 10, period_ms=MINUTE, limit=2, burst=0)
    assert not result.admitted and result.retry_at == T0 + 30_000


def test_repeat_of_an_admitted_schedule_is_not_counted_again(
    flow: FlowStore, client: redis.Redis
) -> None:
    assert check(flow, "e1", T0)
    tat = client.get("sl:flow:rl:app-fn:-")
    again = flow.rate_limit("app-fn", "-", "e1", T0 + 5, period_ms=MINUTE, limit=2, burst=0)
    assert again.admitted and again.repeat
    assert client.get("sl:flow:rl:app-fn:-") == tat
    assert 0 < client.pttl("sl:flow:rl-seen:app-fn:e1") <= RATE_LIMIT_SEEN_TTL_MS


def test_limited_schedule_writes_nothing(flow: FlowStore, client: redis.Redis) -> None:
    check(flow, "e1", T0)
    before = client.get("sl:flow:rl:app-fn:-")
    assert not check(flow, "e2", T0 + 1)
    assert client.get("sl:flow:rl:app-fn:-") == before
    assert client.exists("sl:flow:rl-seen:app-fn:e2") == 0


def test_keys_are_limited_separately(flow: FlowStore) -> None:
    a = flow.rate_limit("app-fn", "a", "e1", T0, period_ms=MINUTE, limit=1, burst=0)
    b = flow.rate_limit("app-fn", "b", "e2", T0, period_ms=MINUTE, limit=1, burst=0)
    a2 = flow.rate_limit("app-fn", "a", "e3", T0, period_ms=MINUTE, limit=1, burst=0)
    assert a.admitted and b.admitted and not a2.admitted


def test_state_expires_with_the_arrival_time(flow: FlowStore, client: redis.Redis) -> None:
    check(flow, "e1", T0)
    assert 0 < client.pttl("sl:flow:rl:app-fn:-") <= 30_000


def test_corrupted_future_value_is_clamped(flow: FlowStore, client: redis.Redis) -> None:
    client.set("sl:flow:rl:app-fn:-", str(T0 + 1_000 * MINUTE))
    # Clamped to now + period + tolerance: admitted again within two periods, not 1000.
    assert not check(flow, "e1", T0)
    assert check(flow, "e2", T0 + 2 * MINUTE)


def test_racing_schedules_admit_exactly_the_limit(flow: FlowStore) -> None:
    results = race(8, lambda i: check(flow, f"e{i}", T0, limit=20, burst=2))
    assert sum(results) == 3
