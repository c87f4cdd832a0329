"""lua/slots_throttle.lua: GCRA start times with reservation, tickets, deferred start jobs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from app.models import JobKind
from app.state.slots import SlotStore, ThrottleCode
from app.state.store import Store
from tests.lua.conftest import T0, make_job

LEASE = 30_000
SLACK = 60_000
HORIZON = 10_000
TICKET = 3_600_000


@pytest.fixture
def slots(store: Store) -> Iterator[SlotStore]:
    yield SlotStore.over(store)


def start(
    store: Store, slots: SlotStore, run: str, now: int = T0, interval: int = 1000, burst: int = 0
) -> tuple[int, ThrottleCode]:
    """Throttle 2 per 2 s (interval 1 s) unless told otherwise; limit 2 + burst back to back."""
    job = make_job(f"{run}:start", run, kind=JobKind.START)
    store.enqueue_job(job, now, now)
    store.begin_job(job.id, "t", now, LEASE)
    tolerance = (2 + burst - 1) * interval
    return slots.throttle(run, job.id, "app-fn", now, interval, tolerance, SLACK, HORIZON, TICKET)


def test_starts_are_spread_one_interval_apart(
    store: Store, slots: SlotStore, client: redis.Redis
) -> None:
    got = [start(store, slots, f"r{i}") for i in range(6)]
    assert [s for s, _ in got] == [T0, T0, T0 + 1000, T0 + 2000, T0 + 3000, T0 + 4000]
    assert [c for _, c in got] == ["now", "now", "later", "later", "later", "later"]
    # Deferred in place: takeable by its delivery at once, resent by the tick if lost.
    assert client.hget("sl:jobs:owner", "r2:start") == "deferred"
    assert client.hget("sl:jobs:lease", "r2:start") == "0"
    assert client.zscore("sl:jobs:due", "r2:start") == T0 + 1000 + SLACK
    assert store.begin_job("r2:start", "countdown", T0 + 1000, LEASE) is not None
    assert client.get("sl:{r5}:throttle") == str(T0 + 4000)


def test_far_starts_wait_for_the_tick(store: Store, slots: SlotStore, client: redis.Redis) -> None:
    for i in range(14):
        start(store, slots, f"r{i}")
    # r13 starts at T0 + 12 s, past the countdown horizon: its send-by is its start.
    assert client.zscore("sl:jobs:due", "r13:start") == T0 + 12_000
    assert client.zscore("sl:jobs:due", "r11:start") == T0 + 10_000 + SLACK
    assert store.release_due(T0 + 11_999, SLACK, 100) == [
        make_job("r12:start", "r12", kind=JobKind.START)
    ]


def test_a_run_keeps_its_start_time(store: Store, slots: SlotStore, client: redis.Redis) -> None:
    for i in range(3):
        start(store, slots, f"r{i}")
    tat = client.get("sl:throttle:app-fn")
    # Delivered again (early, or after a crash): same start, nothing consumed.
    assert start(store, slots, "r2", now=T0 + 500) == (T0 + 1000, "later")
    assert start(store, slots, "r2", now=T0 + 1000) == (T0 + 1000, "now")
    assert start(store, slots, "r0", now=T0 + 1000) == (T0, "now")
    assert client.get("sl:throttle:app-fn") == tat


def test_idle_throttle_admits_a_burst_again(store: Store, slots: SlotStore) -> None:
    for i in range(4):
        start(store, slots, f"a{i}")
    later = T0 + 60_000
    got = [start(store, slots, f"b{i}", now=later) for i in range(3)]
    assert got == [(later, "now"), (later, "now"), (later + 1000, "later")]


def test_burst_adds_back_to_back_starts(store: Store, slots: SlotStore) -> None:
    got = [start(store, slots, f"r{i}", burst=1) for i in range(5)]
    assert [s for s, _ in got] == [T0, T0, T0, T0 + 1000, T0 + 2000]


def test_keys_expire_once_idle(store: Store, slots: SlotStore, client: redis.Redis) -> None:
    start(store, slots, "r0")
    assert 0 < client.pttl("sl:throttle:app-fn") <= 1000
    assert TICKET - 1000 < client.pttl("sl:{r0}:throttle") <= TICKET


def test_gone_job_is_not_deferred(store: Store, slots: SlotStore, client: redis.Redis) -> None:
    for i in range(2):
        start(store, slots, f"r{i}")
    got = slots.throttle("ghost", "ghost:start", "app-fn", T0, 1000, 1000, SLACK, HORIZON, TICKET)
    assert got == (T0 + 1000, "gone")
    assert not client.hexists("sl:jobs:owner", "ghost:start")
